"""Bad input to the transformer package is a clear error naming what is wrong, never a silent
wrong result: no NaN loss from an empty batch, no wrap-around of a negative id, no truncation
of a float prompt, no NaN from a tiny temperature."""
import numpy as np
import pytest

from tinygrad_tx import backend
from transformer import (GPT, CharTokenizer, GPTConfig, MultiHeadAttention, TextDataset, Transformer,
                         TransformerConfig, generate, sample_next)

V = 7


@pytest.fixture(scope="module")
def gpt():
    backend.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=8))


@pytest.fixture(scope="module")
def seq2seq():
    backend.manual_seed(0)
    return Transformer(TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, block_size=6, n_layer=1, n_head=2,
                                         n_embd=8))


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("field, value, needle", [
    ("n_head", 0, "n_head must be positive"),
    ("n_head", -2, "n_head must be positive"),
    ("vocab_size", -1, "vocab_size must be positive"),
    ("vocab_size", 0, "vocab_size must be positive"),
    ("block_size", 2.5, "block_size must be an integer"),
    ("n_embd", "64", "n_embd must be an integer"),
    ("n_layer", True, "n_layer must be an integer"),
    ("dropout", float("nan"), "dropout must be a number in [0, 1)"),
    ("dropout", 1.0, "dropout must be a number in [0, 1)"),
    ("bias", "yes", "bias must be True or False"),
    ("causal", 1, "causal must be True or False"),
    ("n_embd", 9, "not divisible by n_head"),
])
def test_gpt_config_refuses(field, value, needle):
    with pytest.raises(ValueError, match="GPTConfig") as e:
        GPTConfig(**{"n_head": 2, "n_embd": 8, field: value})
    assert needle in str(e.value)


def test_gpt_config_accepts_numpy_ints():
    assert GPTConfig(vocab_size=np.int64(5), n_embd=8, n_head=2).vocab_size == 5


@pytest.mark.parametrize("field, value, needle", [
    ("n_head", 0, "n_head must be positive"),             # was a ZeroDivisionError
    ("src_vocab_size", -3, "src_vocab_size must be positive"),
    ("tgt_vocab_size", 0, "tgt_vocab_size must be positive"),
    ("pad_id", 20, "pad_id"),
    ("pad_id", -1, "pad_id"),
    ("n_embd", 9, "not divisible"),
    ("dropout", -0.5, "dropout"),
])
def test_transformer_config_refuses(field, value, needle):
    with pytest.raises(ValueError, match="TransformerConfig") as e:
        TransformerConfig(**{"n_head": 2, "n_embd": 8, field: value})
    assert needle in str(e.value)


@pytest.mark.parametrize("n_embd, n_head", [(8, 0), (8, -2), (0, 2), (8, 2.0)])
def test_multi_head_attention_refuses_bad_sizes(n_embd, n_head):
    with pytest.raises(ValueError, match="MultiHeadAttention: n_(embd|head) must be a positive integer"):
        MultiHeadAttention(n_embd, n_head)


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("shape", [(1, 0), (0, 3), (0, 0)], ids=["T=0", "B=0", "both"])
def test_gpt_refuses_an_empty_batch(gpt, shape):
    with pytest.raises(ValueError, match="empty"):
        gpt(np.zeros(shape, dtype=np.int64))


def test_gpt_refuses_empty_targets(gpt):
    with pytest.raises(ValueError, match="targets: empty"):
        gpt(np.zeros((1, 3), dtype=np.int64), np.zeros((1, 0), dtype=np.int64))


def test_gpt_refuses_float_ids(gpt):
    with pytest.raises(TypeError, match="integers"):
        gpt(np.array([[1.7, 2.0]]))


@pytest.mark.parametrize("bad", [-1, V], ids=["negative", "vocab_size"])
def test_gpt_refuses_ids_out_of_range(gpt, bad):
    with pytest.raises((IndexError, ValueError), match="7"):       # never a silent wrap-around to row -1
        gpt(np.array([[1, bad]]))


@pytest.mark.parametrize("src_shape, tgt_shape", [((1, 0), (1, 2)), ((0, 3), (0, 2)), ((1, 3), (1, 0))])
def test_encoder_decoder_refuses_an_empty_batch(seq2seq, src_shape, tgt_shape):
    with pytest.raises(ValueError, match="empty"):
        seq2seq(np.ones(src_shape, dtype=np.int64), np.ones(tgt_shape, dtype=np.int64))


@pytest.mark.parametrize("kwargs, needle", [
    ({"max_len": -1}, "max_len"),
    ({"max_len": 2.5}, "max_len"),
    ({"bos_id": V}, "bos_id"),
    ({"bos_id": -1}, "bos_id"),
    ({"eos_id": 99}, "eos_id"),
])
def test_greedy_decode_refuses(seq2seq, kwargs, needle):
    args = {"bos_id": 1, "max_len": 3, **kwargs}
    with pytest.raises(ValueError, match=needle):
        seq2seq.greedy_decode(np.array([[3, 4]]), args.pop("bos_id"), **args)


# ----------------------------------------------------------------------------- generation
PROMPT = np.array([[1, 2, 3]])


@pytest.mark.parametrize("kwargs, needle", [
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -3}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_k": True}, "top_k"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
])
def test_generate_refuses(gpt, kwargs, needle):
    args = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(ValueError, match=needle):
        generate(gpt, PROMPT, args.pop("max_new_tokens"), rng=np.random.default_rng(0), **args)


def test_generate_refuses_a_float_prompt_instead_of_truncating_it(gpt):
    with pytest.raises(TypeError, match="integer token ids"):
        generate(gpt, np.array([[1.7, 2.2]]), 2)


@pytest.mark.parametrize("prompt", [[[1, V]], [[-1, 2]]], ids=["too-large", "negative"])
def test_generate_refuses_prompt_ids_out_of_range(gpt, prompt):
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        generate(gpt, np.array(prompt), 2)


@pytest.mark.parametrize("prompt", [np.zeros((1, 0), dtype=np.int64), np.zeros((0, 2), dtype=np.int64)],
                         ids=["T=0", "B=0"])
def test_generate_refuses_an_empty_prompt(gpt, prompt):
    with pytest.raises(ValueError, match="B >= 1 and T >= 1"):
        generate(gpt, prompt, 2)


def test_generate_with_zero_new_tokens_returns_the_prompt(gpt):
    assert (generate(gpt, PROMPT, 0) == PROMPT).all()


@pytest.mark.parametrize("temperature", [1e-30, 1e-300, 5e-324])
def test_tiny_temperature_is_greedy_not_nan(gpt, temperature):
    greedy = generate(gpt, PROMPT, 6, temperature=0)
    tiny = generate(gpt, PROMPT, 6, temperature=temperature, rng=np.random.default_rng(0))
    assert (tiny == greedy).all()


def test_sample_next_tiny_temperature_shares_exact_ties_and_never_overflows():
    logits = np.array([[1.0, 3.0, 3.0, -2.0], [1e30, 0.0, -1e30, 5.0]], dtype=np.float32)
    rng = np.random.default_rng(0)
    draws = np.array([sample_next(logits, temperature=1e-30, rng=rng) for _ in range(200)])   # (200, B)
    assert set(draws[:, 0]) == {1, 2}                  # the tie is split, no other token
    assert set(draws[:, 1]) == {0}
    with np.errstate(over="raise", invalid="raise"):  # huge logits at temperature 1: no overflow either
        assert sample_next(logits, temperature=1.0, rng=rng).shape == (2,)


def test_top_k_larger_than_the_vocabulary_keeps_all(gpt):
    assert generate(gpt, PROMPT, 3, top_k=10 ** 6, rng=np.random.default_rng(0)).shape == (1, 6)


def test_on_token_is_called_once_per_token_as_it_is_generated(gpt):
    seen = []
    out = generate(gpt, PROMPT, 5, temperature=0.7, rng=np.random.default_rng(1),
                   on_token=lambda ids: seen.append(ids.copy()))
    assert len(seen) == 5
    assert all(s.shape == (1,) for s in seen)
    assert [int(s[0]) for s in seen] == out[0, 3:].tolist()


# ----------------------------------------------------------------------------- data and tokenizer
@pytest.mark.parametrize("split", ["test", "valid", "Train", ""])
def test_get_batch_refuses_an_unknown_split(split):
    with pytest.raises(ValueError, match="'train' or 'val'"):
        TextDataset("abcdefgh" * 20).get_batch(split, 2, 4, np.random.default_rng(0))


@pytest.mark.parametrize("batch_size, block_size", [(0, 4), (2, 0), (-1, 4), (2, 2.5)])
def test_get_batch_refuses_bad_sizes(batch_size, block_size):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        TextDataset("abcdefgh" * 20).get_batch("train", batch_size, block_size, np.random.default_rng(0))


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_dataset_refuses_a_bad_val_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        TextDataset("abcdefgh" * 20, val_fraction=fraction)


@pytest.mark.parametrize("bad", [-1, 3, 1.5, True], ids=["negative", "vocab_size", "float", "bool"])
def test_decode_refuses_ids_outside_the_vocabulary(bad):
    tok = CharTokenizer("abc")
    assert tok.decode([0, 2, np.int64(1)]) == "acb"
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        tok.decode([0, bad])
