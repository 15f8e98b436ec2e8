"""`tx sample --hf`, `tx graph --hf`, `tx attention`, `tx export`, and the docs/scale.md road:
a `tx train` checkpoint exported and trained on in PyTorch with torchrun (DDP, gloo on CPU)."""
import html
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from transformer import GPT, GPTConfig, CharTokenizer, TextDataset, TrainConfig, Trainer, generate
from transformer.hf import load_gpt2, save_gpt2

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXT = "the cat sat on the mat. the dog ate the cat.\n" * 8


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


@pytest.fixture
def hf_dir(tmp_path):
    """A small random GPT-2 folder with a character tokenizer.json."""
    tok = CharTokenizer.from_text(TEXT)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=8))
    return save_gpt2(model, tmp_path / "tiny", tokenizer=tok)


@pytest.fixture
def bare_dir(tmp_path):
    """The same without tokenizer.json: prompts are token ids."""
    return save_gpt2(GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=8)), tmp_path / "bare")


def test_sample_hf_greedy_continues_the_prompt(hf_dir):
    result = invoke("sample", "--hf", hf_dir, "--prompt", "the cat", "--max-new-tokens", 6, "--temperature", 0)
    assert result.exit_code == 0, result.output
    model, tok = load_gpt2(hf_dir)
    expected = generate(model, np.array([tok.encode("the cat")]), 6, temperature=0)
    assert result.output == tok.decode(expected[0]) + "\n"


def test_sample_hf_without_tokenizer_asks_for_ids(bare_dir):
    result = invoke("sample", "--hf", bare_dir, "--prompt", "hi")
    assert result.exit_code == 2 and "has no tokenizer.json: pass the prompt as token ids, --ids" in result.output
    result = invoke("sample", "--hf", bare_dir, "--ids", "1,2,3", "--max-new-tokens", 4, "--temperature", 0)
    assert result.exit_code == 0, result.output
    out = [int(i) for i in result.output.strip().split(",")]
    assert out[:3] == [1, 2, 3] and len(out) == 7 and all(0 <= i < 20 for i in out)


@pytest.mark.parametrize("args, message", [
    (["--ids", "1,x"], "--ids must be comma-separated integers, got '1,x'"),
    (["--ids", "1,20"], r"--ids: [20] outside the vocabulary 0..19"),
])
def test_sample_hf_bad_ids(bare_dir, args, message):
    result = invoke("sample", "--hf", bare_dir, *args)
    assert result.exit_code == 2 and message in result.output


def test_sample_hf_errors(hf_dir, tmp_path):
    result = invoke("sample", "--hf", hf_dir, "--prompt", "XYZ")
    assert result.exit_code == 1 and "characters not in the vocabulary: 'XYZ'" in result.output
    result = invoke("sample", "--hf", tmp_path / "nope")
    assert result.exit_code == 1 and "not a folder" in result.output
    result = invoke("sample", "--ids", "1,2")
    assert result.exit_code == 2 and "--ids needs --hf DIR" in result.output


def test_graph_hf_draws_the_models_backward(hf_dir, tmp_path):
    out = tmp_path / "g.svg"
    result = invoke("graph", "--hf", hf_dir, "--prompt", "the cat sat", "--out", out)
    assert result.exit_code == 0, result.output
    svg = html.unescape(out.read_text())
    model, tok = load_gpt2(hf_dir)
    ids = np.array([tok.encode("the cat sat")])
    _, loss = model(ids[:, :-1], ids[:, 1:])
    assert f"next-token loss {loss.item():.4f}" in svg and "10 predictions" in svg
    for box in ("h.0", "h.1"):                       # one box per block by default
        assert f">{box}<" in svg
    assert "x + mlp" in svg and "wte.weight" in svg


def test_graph_hf_collapse_repeats(hf_dir, tmp_path):
    out = tmp_path / "g.svg"
    result = invoke("graph", "--hf", hf_dir, "--prompt", "the cat", "--collapse", "repeats", "--out", out)
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    assert "h.0.attn" in svg and "x1" in svg         # h.0 drawn op by op, h.1 folded into one box


def test_graph_hf_with_ids(bare_dir, tmp_path):
    result = invoke("graph", "--hf", bare_dir, "--ids", "3,4,5", "--out", tmp_path / "g.dot")
    assert result.exit_code == 0, result.output
    assert "3,4,5" in (tmp_path / "g.dot").read_text()


@pytest.mark.parametrize("args, message", [
    ([], "tx graph needs a PRESET or --hf DIR, exactly one (see: tx graph --help)"),
    (["gpt", "--hf", "x"], "tx graph needs a PRESET or --hf DIR, exactly one (see: tx graph --help)"),
    (["gpt", "--prompt", "hi"], "--prompt and --ids go with --hf DIR"),
])
def test_graph_preset_or_hf(args, message):
    result = invoke("graph", *args)
    assert result.exit_code == 2 and message in result.output


def test_graph_hf_needs_two_tokens(hf_dir):
    result = invoke("graph", "--hf", hf_dir, "--prompt", "t")
    assert result.exit_code == 2 and "the prompt has 1 token(s); this needs at least 2" in result.output


def test_attention_writes_every_head(hf_dir, tmp_path):
    out = tmp_path / "heads.png"
    result = invoke("attention", "--hf", hf_dir, "--prompt", "the cat", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "heads.svg"
    assert invoke("attention", "--hf", hf_dir, "--prompt", "the cat", "--out", svg).exit_code == 0
    text = svg.read_text()
    assert all(f"layer {layer}, head {h}" in text for layer in range(2) for h in range(2))
    bad = invoke("attention", "--hf", hf_dir, "--prompt", "the", "--out", tmp_path / "heads.jpg")
    assert bad.exit_code == 2 and "end it with .png or .svg" in bad.output


def test_attention_one_layer(hf_dir, tmp_path):
    svg = tmp_path / "layer1.svg"
    result = invoke("attention", "--hf", hf_dir, "--prompt", "the cat", "--layer", 1, "--out", svg)
    assert result.exit_code == 0, result.output
    text = svg.read_text()
    assert "layer 1" in text and "head 0" in text and "head 1" in text and "layer 0, head" not in text
    bad = invoke("attention", "--hf", hf_dir, "--prompt", "the", "--layer", 2, "--out", svg)
    assert bad.exit_code == 2 and "--layer 2: the model has layers 0..1" in bad.output


def _train_run(out, max_iters=4):
    ds = TextDataset(TEXT)
    cfg = GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16)
    Trainer(cfg, TrainConfig(max_iters=max_iters, eval_interval=max_iters, eval_iters=1, batch_size=4),
            ds, out, progress=False).run()
    return ds


def test_export_checkpoint_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    _train_run(tmp_path / "run")
    result = invoke("export", "--ckpt", tmp_path / "run", "--out", tmp_path / "hf")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors",
                                                                   "tokenizer.json", "tokenizer_config.json"]
    ours, tok = cli.load_model(tmp_path / "run")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = np.array([tok.encode("the cat")])
    theirs = hf(torch.from_numpy(ids)).logits.detach().numpy()
    np.testing.assert_allclose(ours(ids).numpy(), theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_export_errors(tmp_path):
    result = invoke("export", "--ckpt", tmp_path / "none", "--out", tmp_path / "hf")
    assert result.exit_code == 1 and "no meta.json" in result.output
    assert invoke("export", "--ckpt", tmp_path).exit_code == 2          # --out is required


def _load_scale_train():
    spec = importlib.util.spec_from_file_location("scale_train", ROOT / "docs" / "scale_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _torchrun(nproc, hf, data, out, steps=2):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([torchrun, "--standalone", f"--nproc_per_node={nproc}", str(ROOT / "docs" / "scale_train.py"),
                             "--model", str(hf), "--data", str(data), "--steps", str(steps), "--batch-size", "4",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)           # its own process group: a hang kills every rank
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"torchrun timed out after 120 s:\n{stdout[-1000:]}\n{stderr[-3000:]}") from None
    assert proc.returncode == 0, stderr[-3000:]
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _continue_in_torch(tmp_path, nproc):
    """tx train -> tx export -> torchrun docs/scale_train.py: its first loss is our loss on the
    same batch (float32, 1e-5), then it trains and saves a model we load back."""
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    ds = _train_run(tmp_path / "run")
    assert invoke("export", "--ckpt", tmp_path / "run", "--out", tmp_path / "hf").exit_code == 0
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    rows = _torchrun(nproc, tmp_path / "hf", data, tmp_path / "torch-out")
    assert [r["step"] for r in rows] == [0, 1] and rows[0]["world_size"] == nproc

    ours, tok = cli.load_model(tmp_path / "run")
    ids = np.array(tok.encode(TEXT), dtype=np.int64)
    x, y = _load_scale_train().get_batch(ids, 4, ours.config.block_size, np.random.default_rng(1337))   # rank 0's
    _, loss = ours(x.numpy(), y.numpy())
    assert abs(rows[0]["loss"] - loss.item()) <= 1e-5 * abs(loss.item())
    again, _ = load_gpt2(tmp_path / "torch-out")                   # trained in torch, back here
    assert again.config == ours.config and again(x.numpy()[:1]).shape == (1, 8, ds.tokenizer.vocab_size)


def test_exported_checkpoint_continues_in_torch_ddp_one_process(tmp_path):
    _continue_in_torch(tmp_path, 1)


@pytest.mark.slow
def test_exported_checkpoint_continues_in_torch_ddp_two_processes(tmp_path):
    _continue_in_torch(tmp_path, 2)
