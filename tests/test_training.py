"""Training for real: the GPT learns Shakespeare, the encoder-decoder learns to reverse, and the
CLI commands that drive them work end to end. The two real training runs are marked slow."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from transformer import GPTConfig, TextDataset, TrainConfig, Trainer, lr_at
from transformer.reverse_task import BOS, EOS, exact_match, make_batch, train_reverse


def unigram_entropy(ids):
    p = np.bincount(ids) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = TrainConfig(max_iters=1000, warmup_iters=100, lr=1e-3)
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 101)
    assert lr_at(99, cfg) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx((1e-3 + 1e-4) / 2)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_weight_decay_only_on_2d_weights(tmp_path):
    ds = TextDataset("abcdefgh" * 40)
    t = Trainer(GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=4, n_layer=1, n_head=1, n_embd=4),
                TrainConfig(max_iters=1, eval_iters=1, batch_size=2), ds, tmp_path, progress=False)
    decay, no_decay = t.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.ndim == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])
    assert t.optimizer.param_groups[0]["betas"] == (0.9, 0.99)


def test_dataset_split_is_first_90_last_10():
    ds = TextDataset("ab" * 500)
    assert len(ds.train) == 900 and len(ds.val) == 100
    x, y = ds.get_batch("train", 3, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (3, 8) and (x[:, 1:] == y[:, :-1]).all()


@pytest.mark.slow
def test_short_training_run_gets_well_below_unigram_entropy(tmp_path):
    ds = TextDataset.from_file()
    mc = GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=64)
    last = Trainer(mc, TrainConfig(max_iters=300, eval_interval=100, eval_iters=5, batch_size=16),
                   ds, tmp_path, progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 100, 200, 300]
    assert set(rows[0]) == {"step", "train_loss", "val_loss", "lr", "elapsed"}
    h = unigram_entropy(ds.train)                 # about 3.31 nats for Shakespeare's characters
    assert last["val_loss"] < h - 0.5, (last, h)


@pytest.mark.slow
def test_seq2seq_reverses_held_out_strings():
    model, result = train_reverse(steps=1000, progress=False)
    assert result["exact_match"] >= 0.99, result


def test_reverse_batches_and_exact_match_scoring():
    src, tgt_in, tgt_out = make_batch(np.random.default_rng(0), 4, 1, 5, held_out=False)
    for s, ti, to in zip(src, tgt_in, tgt_out):
        n = int((s != 0).sum())
        assert ti[0] == BOS and (ti[1:n + 1] == s[:n][::-1]).all()
        assert (to[:n] == s[:n][::-1]).all() and to[n] == EOS

    class Oracle:                                  # a "model" that answers correctly
        def greedy_decode(self, src, bos, max_len, eos_id):
            return tgt_out
    assert exact_match(Oracle(), src, tgt_out) == 1.0


def test_cli_train_then_sample(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("to be or not to be, that is the question\n" * 30)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(corpus), "--out", str(out), "--max-iters", "6",
                                  "--eval-interval", "3", "--eval-iters", "1", "--batch-size", "2",
                                  "--block-size", "8", "--n-layer", "1", "--n-head", "2", "--n-embd", "8",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "val_loss" in r.output and (out / "meta.json").exists()
    r = CliRunner().invoke(main, ["sample", "--ckpt", str(out), "--prompt", "to be", "--max-new-tokens", "12",
                                  "--temperature", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("to be") and len(r.output.rstrip("\n")) >= 5 + 12 - 1


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/no/such/file.txt"], "no such file"),
    (["train", "--n-embd", "10", "--n-head", "3", "--max-iters", "1"], "not divisible"),
    (["train", "--out", "/proc/forbidden/run", "--max-iters", "1"], "cannot write"),
    (["sample", "--ckpt", "/no/such/ckpt"], "no meta.json"),
])
def test_cli_bad_input_is_one_line_error(args, message):
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output


def test_cli_sample_rejects_unknown_prompt_characters(tmp_path):
    ds = TextDataset("abcabc" * 20)
    Trainer(GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=4, n_layer=1, n_head=1, n_embd=4),
            TrainConfig(max_iters=1, eval_iters=1, batch_size=2), ds, tmp_path, progress=False).run()
    r = CliRunner().invoke(main, ["sample", "--ckpt", str(tmp_path), "--prompt", "abz"])
    assert r.exit_code != 0 and "not trained on" in r.output and "'z'" in r.output


def test_cli_seq2seq_runs(tmp_path):
    r = CliRunner().invoke(main, ["seq2seq", "--steps", "3", "--batch-size", "4", "--max-len", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "exact_match" in r.output


def test_resume_refuses_changed_training_settings(tmp_path):
    from transformer import CheckpointError
    ds = TextDataset("abcabc" * 20)
    mc = GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=4, n_layer=1, n_head=1, n_embd=4)
    Trainer(mc, TrainConfig(max_iters=2, eval_iters=1, batch_size=2), ds, tmp_path, progress=False).run()
    with pytest.raises(CheckpointError, match="batch_size"):
        Trainer(mc, TrainConfig(max_iters=4, eval_iters=1, batch_size=3), ds, tmp_path, resume=True, progress=False)
    # a longer max_iters is allowed: that is how a finished run is extended
    Trainer(mc, TrainConfig(max_iters=4, eval_iters=1, batch_size=2), ds, tmp_path, resume=True, progress=False)


@pytest.mark.slow
def test_the_readme_seq2seq_example_learns_the_task():
    """README's `tx seq2seq` example must show the task learned, not 7.6%: run the command its
    table shows and read the accuracy it prints."""
    import re
    import shlex
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `tx seq2seq`"))
    command = re.findall(r"`(tx seq2seq[^`]*)`", row)[-1]
    r = CliRunner().invoke(main, shlex.split(command)[1:] + ["--no-progress"])
    assert r.exit_code == 0, r.output
    accuracy = float(re.search(r"held-out exact_match ([\d.]+)", r.output).group(1))
    assert accuracy >= 0.95, (command, r.output)
    assert sum(line.endswith(" ok") for line in r.output.splitlines()) >= 4, r.output
