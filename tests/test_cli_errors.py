"""Bad input to `tx`: every command fails with a non-zero exit status and ONE line starting
with "Error:", never a traceback. And every command's --help shows an example.

What "block size exceeded" means on the command line:
  * tx train: --block-size must be shorter than each split of the text (an example is
    block_size + 1 consecutive characters), else a one-line error before any model is built;
    running out of memory on a huge block size is also one line;
  * tx sample: a prompt longer than the model's block size is not an error: generation keeps
    the last block_size characters as context (as nanoGPT does), and a note on stderr says so.
"""
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
