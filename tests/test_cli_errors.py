"""Bad input to `tx`: every command fails with a non-zero exit status and ONE line starting
with "Error:", never a traceback. And every command's --help shows an example.

What "block size exceeded" means on the command line:
  * tx train: --block-size must be shorter than each split of the text (an example is
    block_size + 1 consecutive characters), else a one-line error before any model is built;
    running out of memory on a huge block size is also one line;
  * tx sample: a prompt longer than the model's block size is not an error: generation keeps
    the last block_size characters as context (as nanoGPT does), and a note on stderr says so.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli

COMMANDS = sorted(cli.main.commands)
PRESET_COMMANDS = [name for name in ("graph", "step", "explore") if name in cli.main.commands]
TINY_MODEL = ["--block-size", "8", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "2",
              "--eval-iters", "1", "--eval-interval", "1", "--no-progress"]


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def assert_one_line_error(result, *needles, after=0):
    """Non-zero exit through SystemExit (click's clean exit, not a crash) and exactly one
    non-empty output line, "Error: ...", containing every needle; `after` lines of normal
    output may come before it (a command that failed part-way)."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}\n{result.output}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == after + 1 and lines[-1].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 12, encoding="utf-8")
    return path


@pytest.fixture
def a_file(tmp_path):
    """A plain file: a path 'inside' it cannot be created, whoever runs the tests (even root)."""
    path = tmp_path / "not_a_folder"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny trained checkpoint (2 steps, block size 8) whose vocabulary is the characters of
    a short English text."""
    root = tmp_path_factory.mktemp("ckpt")
    data = root / "small.txt"
    data.write_text("To be, or not to be, that is the question.\n" * 12, encoding="utf-8")
    result = invoke("train", "--data", data, "--out", root / "run", "--max-iters", 2, *TINY_MODEL)
    assert result.exit_code == 0, result.output
    return root / "run"


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_has_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"tx {command}" in result.output.split("Example", 1)[1], result.output


def test_top_level_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:", 1)[1].split("\n\n")[0].splitlines() if line.strip()}
    assert set(COMMANDS) <= listed, set(COMMANDS) - listed


# ----------------------------------------------------------------------------- data
def test_train_missing_data_file(tmp_path):
    assert_one_line_error(invoke("train", "--data", tmp_path / "missing.txt", "--out", tmp_path / "run"),
                          "missing.txt")


def test_train_data_not_text(tmp_path):
    data = tmp_path / "image.txt"
    data.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" * 10)
    assert_one_line_error(invoke("train", "--data", data, "--out", tmp_path / "run"), "not UTF-8")


def test_train_data_too_short(tmp_path):
    data = tmp_path / "abc.txt"
    data.write_text("abc")
    assert_one_line_error(invoke("train", "--data", data, "--out", tmp_path / "run"), "too short")


# ----------------------------------------------------------------------------- model shape
def test_train_n_embd_not_divisible_by_n_head(tmp_path, text_file):
    assert_one_line_error(invoke("train", "--data", text_file, "--out", tmp_path / "run", "--block-size", 8,
                                 "--n-embd", 10, "--n-head", 3), "n_embd=10", "n_head=3")


# ----------------------------------------------------------------------------- block size
def test_train_block_size_longer_than_the_text(tmp_path, text_file):
    line = assert_one_line_error(invoke("train", "--data", text_file, "--out", tmp_path / "run",
                                        "--block-size", 500), "--block-size 500")
    assert "smaller --block-size" in line


def test_train_block_size_longer_than_the_shipped_corpus(tmp_path):
    assert_one_line_error(invoke("train", "--out", tmp_path / "run", "--block-size", 10 ** 6), "--block-size 1000000")


def test_train_out_of_memory_is_one_line(tmp_path, text_file, monkeypatch):
    def run(self):
        raise MemoryError
    monkeypatch.setattr(cli.Trainer, "run", run)
    assert_one_line_error(invoke("train", "--data", text_file, "--out", tmp_path / "run", *TINY_MODEL),
                          "out of memory", "--block-size", after=1)      # after "training N parameters ..."


def test_sample_prompt_longer_than_block_size_is_cropped_with_a_note(checkpoint):
    result = invoke("sample", "--ckpt", checkpoint, "--prompt", "To be, or not to be", "--max-new-tokens", 3)
    assert result.exit_code == 0, result.output
    assert "more than the model's block size 8" in result.output
    assert "To be, or not to be" in result.output


# ----------------------------------------------------------------------------- prompts
def test_sample_unknown_characters_in_prompt(checkpoint):
    assert_one_line_error(invoke("sample", "--ckpt", checkpoint, "--prompt", "To be\u20ac"),
                          "not trained on", "\u20ac")


def test_sample_empty_prompt(checkpoint):
    assert_one_line_error(invoke("sample", "--ckpt", checkpoint, "--prompt", ""), "--prompt")


def test_sample_missing_checkpoint(tmp_path):
    assert_one_line_error(invoke("sample", "--ckpt", tmp_path / "nothing here"), "meta.json")


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("command", PRESET_COMMANDS)
def test_bad_preset_name(command, tmp_path):
    line = assert_one_line_error(invoke(command, "nope"), "'nope'")
    assert "attention" in line                  # lists the valid names


@pytest.mark.parametrize("command", PRESET_COMMANDS)
def test_close_preset_name_gets_a_suggestion(command):
    assert_one_line_error(invoke(command, "atention"), "did you mean attention")


# ----------------------------------------------------------------------------- output paths
def unwritable_cases(parent):
    """(command args) writing below `parent`, a plain file, for every command that writes."""
    cases = {"train": ["train", "--out", parent / "run", "--max-iters", 1],
             "graph": ["graph", "neuron", "--out", parent / "g.svg"],
             "step": ["step", "neuron", "--all", "--out", parent / "frames"],
             "explore": ["explore", "neuron", "--out", parent / "page.html"]}
    return {name: args for name, args in cases.items() if name in cli.main.commands}


@pytest.mark.parametrize("command", ["train", "graph", "step", "explore"])
def test_unwritable_output_folder(command, a_file):
    args = unwritable_cases(a_file).get(command)
    if args is None:
        pytest.skip(f"tx {command} does not exist")
    assert_one_line_error(invoke(*args), str(a_file))


def test_figures_unwritable_output_folder(a_file):
    figures = cli.main.commands.get("figures")
    if figures is None:
        pytest.skip("tx figures does not exist yet")
    opts = {p.name for p in figures.params}
    out_opt = next((o for o in ("out", "out_dir") if o in opts), None)
    if out_opt is None:
        pytest.skip("tx figures takes no output path")
    assert_one_line_error(invoke("figures", "--out", a_file / "figs"), str(a_file))


def test_graph_and_explore_reject_the_wrong_extension(tmp_path):
    assert_one_line_error(invoke("graph", "neuron", "--out", tmp_path / "g.txt"), "--out")
    assert_one_line_error(invoke("explore", "neuron", "--out", tmp_path / "page.svg"), ".html")


# ----------------------------------------------------------------------------- click's own checks
@pytest.mark.parametrize("args, needle", [
    (["seq2seq", "--max-len", "40"], "--max-len"),
    (["train", "--norm", "middle"], "--norm"),
    (["sample", "--top-k", "0"], "--top-k"),
    (["graph"], "PRESET"),
    (["no-such-command"], "no-such-command"),
], ids=["out-of-range", "bad-choice", "below-minimum", "missing-argument", "unknown-command"])
def test_usage_errors_are_one_line_too(args, needle):
    line = assert_one_line_error(invoke(*args), needle)
    assert "--help" in line                     # points at the command's help instead of printing it


# ----------------------------------------------------------------------------- real process
TX = Path(sys.executable).parent / "tx"
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not TX.exists(), reason="the `tx` console script is not installed next to this Python")
def test_console_script_error_is_one_line_on_stderr(tmp_path):
    proc = subprocess.run([str(TX), "graph", "nope"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: unknown preset 'nope'"), proc.stderr


# ----------------------------------------------------------------------------- consistent names
RANDOM = ("train", "sample", "seq2seq", "graph", "step", "explore", "figures")
WRITES = ("train", "graph", "step", "explore", "figures")


def option_flags(command):
    return {flag for p in cli.main.commands[command].params for flag in getattr(p, "opts", [])}


@pytest.mark.parametrize("command", [c for c in RANDOM if c in cli.main.commands])
def test_commands_that_use_randomness_take_seed(command):
    assert "--seed" in option_flags(command)


@pytest.mark.parametrize("command", [c for c in WRITES if c in cli.main.commands])
def test_output_paths_are_called_out(command):
    assert "--out" in option_flags(command)


# ----------------------------------------------------------------------------- every option is checked
def seed_args(command, tmp_path):
    """A run of `command` that would be valid but for its --seed."""
    return {"train": ["train", "--out", tmp_path / "run"], "sample": ["sample", "--ckpt", tmp_path],
            "seq2seq": ["seq2seq"], "graph": ["graph", "neuron", "--out", tmp_path / "g.svg"],
            "step": ["step", "neuron", "--all"], "explore": ["explore", "neuron", "--out", tmp_path / "p.html"],
            "figures": ["figures", "--out", tmp_path / "figs"], "why": ["why", "attention", "--tensor", "scores"],
            "animate": ["animate", "neuron", "--out", tmp_path / "a.gif"]}[command]


@pytest.mark.parametrize("command", [c for c in COMMANDS if "--seed" in option_flags(c)])
@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5", "abc"])
def test_bad_seed_is_a_usage_error_on_every_command(command, seed, tmp_path):
    result = invoke(*seed_args(command, tmp_path), "--seed", seed)
    assert result.exit_code == 2
    assert_one_line_error(result, "--seed")
    assert not list(tmp_path.iterdir())                            # nothing written


@pytest.mark.parametrize("args, needle", [
    (["train", "--max-iters", "0"], "--max-iters"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--eval-interval", "-1"], "--eval-interval"),
    (["train", "--n-head", "0"], "--n-head"),
    (["train", "--n-embd", "0"], "--n-embd"),
    (["train", "--block-size", "0"], "--block-size"),
    (["train", "--warmup-iters", "-1"], "--warmup-iters"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--weight-decay", "nan"], "--weight-decay"),
    (["train", "--grad-clip", "inf"], "--grad-clip"),
    (["train", "--dropout", "1"], "--dropout"),
    (["train", "--dropout", "nan"], "--dropout"),
    (["sample", "--temperature", "nan"], "--temperature"),
    (["sample", "--temperature", "inf"], "--temperature"),
    (["sample", "--temperature", "-0.5"], "--temperature"),
    (["sample", "--top-k", "-2"], "--top-k"),
    (["sample", "--top-k", "2.5"], "--top-k"),
    (["sample", "--max-new-tokens", "-1"], "--max-new-tokens"),
    (["seq2seq", "--steps", "0"], "--steps"),
    (["seq2seq", "--batch-size", "0"], "--batch-size"),
    (["seq2seq", "--max-len", "0"], "--max-len"),
    (["bench", "--rounds", "0"], "--rounds"),
    (["bench", "--steps", "0"], "--steps"),
    (["bench", "--threads", "0"], "--threads"),
])
def test_every_option_is_checked_with_its_name(args, needle, tmp_path):
    result = invoke(*args, *(["--out", tmp_path / "run"] if args[0] == "train" else []))
    assert result.exit_code == 2
    assert_one_line_error(result, needle)


# ----------------------------------------------------------------------------- TX_DEVICE
def test_tx_device_bogus_is_one_line_on_every_command():
    for args in (["gradcheck", "--op", "add"], ["train", "--max-iters", "1"], ["sample"], ["seq2seq"],
                 ["graph", "neuron"]):
        result = CliRunner().invoke(cli.main, args, env={"TX_DEVICE": "bogus"})
        assert_one_line_error(result, "TX_DEVICE='bogus'", "cpu or gpu")


@pytest.mark.skipif(cli.tinygrad_tx.backend.gpu_available(), reason="CuPy and a GPU are here")
@pytest.mark.parametrize("args", [["train", "--max-iters", "1"], ["sample"], ["seq2seq", "--steps", "1"],
                                  ["bench", "--no-torch"], ["gradcheck", "--op", "add"]])
def test_tx_device_gpu_without_cupy_is_one_line(args, tmp_path, monkeypatch):
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "run")]
    monkeypatch.setenv("TX_DEVICE", "gpu")
    monkeypatch.setattr(cli.tinygrad_tx.backend, "_default_device", "gpu")   # as read from TX_DEVICE at import
    assert_one_line_error(CliRunner().invoke(cli.main, args), "CuPy")


def run_tx(*args, env=None):
    return subprocess.run([str(TX), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


@pytest.mark.skipif(not TX.exists(), reason="the `tx` console script is not installed next to this Python")
@pytest.mark.parametrize("args, env, needle", [
    (["sample"], {"TX_DEVICE": "bogus"}, "TX_DEVICE='bogus'"),
    (["seq2seq", "--steps", "1"], {"TX_DEVICE": "gpu"}, "gpu"),
    (["sample", "--temperature", "nan"], {}, "--temperature"),
    (["train", "--lr", "inf"], {}, "--lr"),
    (["graph", "neuron", "--seed", "-1"], {}, "--seed"),
], ids=["device-bogus", "device-gpu", "temperature-nan", "lr-inf", "seed-negative"])
def test_the_installed_tx_prints_one_line_and_no_traceback(args, env, needle, tmp_path):
    if env.get("TX_DEVICE") == "gpu" and cli.tinygrad_tx.backend.gpu_available():
        pytest.skip("CuPy and a GPU are here")
    proc = run_tx(*args, env=env)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], proc.stderr


# ----------------------------------------------------------------------------- bench without torch
def test_bench_without_torch_says_so_and_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)               # `import torch` now fails
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda args: calls.append(args) or 0)
    assert_one_line_error(invoke("bench"), "PyTorch", "not installed", "--no-torch")
    assert calls == []
    with pytest.raises(SystemExit):                                # --no-torch needs no torch
        cli.main(["bench", "--no-torch"], standalone_mode=False)
    assert calls and "--no-torch" in calls[0]


# ----------------------------------------------------------------------------- sample streams
def test_sample_prints_each_token_as_it_is_generated(checkpoint, monkeypatch):
    seen = []
    real_generate = cli.generate

    def spying_generate(*args, on_token, **kw):
        def on_token_then_look(ids):
            on_token(ids)
            sys.stdout.flush()
            seen.append(sys.stdout.buffer.getvalue().decode())       # what the user sees so far
        return real_generate(*args, on_token=on_token_then_look, **kw)
    monkeypatch.setattr(cli, "generate", spying_generate)
    result = invoke("sample", "--ckpt", checkpoint, "--prompt", "To", "--max-new-tokens", 6, "--temperature", 0)
    assert result.exit_code == 0, result.output
    assert len(seen) == 6
    assert [len(s) for s in seen] == [3, 4, 5, 6, 7, 8]             # one more character after each token
    assert all(s.startswith("To") for s in seen)
    assert result.output == seen[-1] + "\n"


# ----------------------------------------------------------------------------- seq2seq shows the answers
def test_seq2seq_prints_input_prediction_expected_and_verdict():
    import re
    result = invoke("seq2seq", "--steps", 2, "--batch-size", 4, "--max-len", 4, "--no-progress")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "->" in line]
    assert len(rows) == 5
    for line in rows:
        m = re.fullmatch(r"\s*(\d+) -> (\d*)\s+\((\d+)\) (ok|wrong)", line)
        assert m, line
        src, got, want, verdict = m.groups()
        assert want == src[::-1]
        assert verdict == ("ok" if got == want else "wrong")
    assert "exact_match" in result.output
