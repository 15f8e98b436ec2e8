"""Training and checkpoints lose nothing: an existing run is never overwritten by accident,
--resume refuses another text or another config (naming what changed), a NaN stops the run and
keeps the last good checkpoint, Ctrl-C saves the current step and prints how to continue,
metrics.jsonl is strict JSON, and a tampered or malformed checkpoint is one clear error (never
a hang on /dev/zero, never a read of a file outside the folder)."""
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cli
import transformer.checkpoint as ckpt
import transformer.train as train_mod
from transformer import (CheckpointError, GPTConfig, TextDataset, TrainConfig, Trainer, TrainingDiverged,
                         load_checkpoint, load_model, save_checkpoint)

TEXT = "To be, or not to be, that is the question.\n" * 12
TINY = ["--block-size", "8", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "2",
        "--eval-iters", "1", "--no-progress"]
TX = Path(sys.executable).parent / "tx"
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args, **kw):
    return CliRunner().invoke(cli.main, [str(a) for a in args], **kw)


def one_error_line(result, *needles):
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def snapshot(folder):
    """{name: (bytes, mtime_ns)} of every file in folder: to show nothing was touched."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(folder).iterdir())}


def tiny_trainer(out, max_iters=12, eval_interval=4, callback=None, **kw):
    ds = TextDataset(TEXT)
    mc = GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8)
    tc = TrainConfig(max_iters=max_iters, eval_interval=eval_interval, eval_iters=1, batch_size=2)
    return Trainer(mc, tc, ds, out, progress=False, callback=callback, **kw)


def all_finite(out):
    state, _, optim_state = load_checkpoint(out)
    return all(np.isfinite(v).all() for v in state.values())


# ----------------------------------------------------------------------------- an existing run
def test_trainer_refuses_an_existing_run_without_resume_or_overwrite(tmp_path):
    tiny_trainer(tmp_path, max_iters=2).run()
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="already holds a training run"):
        tiny_trainer(tmp_path, max_iters=2)
    assert snapshot(tmp_path) == before


def test_cli_train_onto_an_existing_run_is_refused_and_touches_nothing(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY).exit_code == 0
    before = snapshot(out)
    line = one_error_line(invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY),
                          "already holds a training run", "step 2", "--resume", "--overwrite")
    assert str(out) in line
    assert snapshot(out) == before


def test_cli_overwrite_starts_again(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--eval-interval", 2, *TINY).exit_code == 0
    r = invoke("train", "--data", data, "--out", out, "--max-iters", 2, "--eval-interval", 1, "--overwrite", *TINY)
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out)[1]["step"] == 2
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]                                   # the old run's rows are gone
    assert len(list(out.glob("model-*.npz"))) == 1 and not list(out.glob(".*tmp"))


def test_cli_resume_and_overwrite_together_is_a_usage_error(tmp_path):
    one_error_line(invoke("train", "--out", tmp_path, "--resume", "--overwrite"), "--resume", "--overwrite")


def test_overwrite_keeps_the_old_checkpoint_until_the_new_one_is_committed(tmp_path, monkeypatch):
    tiny_trainer(tmp_path, max_iters=4).run()
    old = load_checkpoint(tmp_path)[1]["step"]

    def crash(*a, **k):
        raise OSError("disk full")
    t = tiny_trainer(tmp_path, max_iters=2, overwrite=True)
    monkeypatch.setattr(train_mod, "save_checkpoint", crash)
    with pytest.raises(OSError, match="disk full"):
        t.run()
    assert load_checkpoint(tmp_path)[1]["step"] == old


# ----------------------------------------------------------------------------- resume: same run only
def test_resume_on_another_text_with_the_same_vocabulary_is_refused(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY).exit_code == 0
    data.write_text(TEXT.replace("question", "nestquiot"))           # same characters, another text
    one_error_line(invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--resume", *TINY),
                   "not the text the checkpoint was trained on", "sha256", "--data")


def test_resume_on_another_vocabulary_names_the_new_characters(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY).exit_code == 0
    data.write_text(TEXT + "XYZ")
    one_error_line(invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--resume", *TINY),
                   "vocabulary differs", "'XYZ'")


def test_resume_of_an_old_checkpoint_without_the_text_hash_works_with_a_note(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY).exit_code == 0
    meta = json.loads((out / "meta.json").read_text())
    del meta["data"]                                                 # as written before the hash existed
    (out / "meta.json").write_text(json.dumps(meta))
    r = invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--resume", *TINY)
    assert r.exit_code == 0, r.output
    assert "note: this checkpoint predates corpus hashes" in r.output


def test_resume_of_a_checkpoint_from_before_layer_norm_eps_takes_its_default(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY).exit_code == 0
    meta = json.loads((out / "meta.json").read_text())
    del meta["model_config"]["layer_norm_eps"]                      # written before the field existed
    (out / "meta.json").write_text(json.dumps(meta))
    r = invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--resume", *TINY)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "meta.json").read_text())["step"] == 4


def test_resume_with_one_different_option_names_only_that_option(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY).exit_code == 0
    args = [a if a != "16" else "32" for a in TINY]
    line = one_error_line(invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--resume", *args),
                          "--n-embd: the checkpoint has 16, you passed 32")
    assert "{" not in line                                           # not both whole configs


def test_resume_with_a_different_flag_names_it_as_written(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, *TINY).exit_code == 0
    one_error_line(invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--resume", "--no-bias", *TINY),
                   "--bias: the checkpoint has --bias, you passed --no-bias")


def test_resume_takes_left_out_options_from_the_checkpoint(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 2, "--lr", "3e-3", *TINY).exit_code == 0
    r = invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--resume", "--no-progress")
    assert r.exit_code == 0, r.output
    meta = load_checkpoint(out)[1]
    assert meta["step"] == 4 and meta["model_config"]["n_embd"] == 16 and meta["train_config"]["lr"] == 3e-3


def test_trainer_config_mismatch_names_the_field(tmp_path):
    tiny_trainer(tmp_path, max_iters=2).run()
    ds = TextDataset(TEXT)
    mc = GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises(CheckpointError) as e:
        Trainer(mc, TrainConfig(max_iters=4, eval_interval=4, eval_iters=1, batch_size=3), ds, tmp_path,
                resume=True, progress=False)
    assert str(e.value).endswith("batch_size: checkpoint has 2, requested 3")


# ----------------------------------------------------------------------------- NaN and inf
def poison(trainer):
    for p in trainer.model.parameters():
        p.data[...] = np.nan


def test_a_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    holder = {}

    def callback(step, loss):
        if step == 5:
            poison(holder["t"])
    t = holder["t"] = tiny_trainer(tmp_path, callback=callback)
    with pytest.raises(TrainingDiverged, match="the loss became nan at step 5"):
        t.run()
    assert t.step == 5
    assert load_checkpoint(tmp_path)[1]["step"] == 4 and all_finite(tmp_path)


def test_non_finite_weights_are_never_saved(tmp_path):
    holder = {}

    def callback(step, loss):
        if step == 8:                 # the next thing is the evaluation and save at step 8
            poison(holder["t"])
    t = holder["t"] = tiny_trainer(tmp_path, callback=callback)
    with pytest.raises(TrainingDiverged, match="step 8"):
        t.run()
    assert load_checkpoint(tmp_path)[1]["step"] == 4 and all_finite(tmp_path)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 4]                                           # no row for the unsaved step


def test_a_non_finite_gradient_norm_stops_the_run(tmp_path, monkeypatch):
    def clip(params, max_norm):
        raise FloatingPointError("clip_grad_norm_: the gradient norm is inf")
    monkeypatch.setattr(train_mod.optim, "clip_grad_norm_", clip)
    with pytest.raises(TrainingDiverged, match="gradient norm became non-finite at step 0"):
        tiny_trainer(tmp_path).run()


def test_optimizer_step_order_and_what_it_returns():
    """The step both trainers share: the hooks run while the graph exists and just before the
    update; the norm returned is the one before clipping."""
    from tinygrad_tx import Tensor, optim
    w = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    seen = []
    value, norm = train_mod.optimizer_step((w * w).sum() * 0.5, opt, 1.0, step=0,          # dL/dw = w
                                           before_backward=lambda: seen.append(w.grad is None),
                                           before_update=lambda: seen.append(w.grad.tolist()))
    assert value == 12.5 and norm == pytest.approx(5.0)
    assert seen[0] is True and np.allclose(seen[1], [0.6, 0.8], atol=1e-6)            # clipped to norm 1
    assert np.allclose(w.data, [3 - 0.06, 4 - 0.08], atol=1e-6)
    assert train_mod.optimizer_step((w * w).sum(), opt, 0, step=1)[1] is None           # grad_clip 0: no norm


def test_optimizer_step_refuses_a_nan_loss_before_touching_the_weights():
    from tinygrad_tx import Tensor, optim
    w = Tensor(np.array([np.nan, 1.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    before = w.data.copy()
    with pytest.raises(TrainingDiverged, match="the loss became nan at step 7"):
        train_mod.optimizer_step(w.sum(), opt, 1.0, step=7, before_update=lambda: pytest.fail("updated"))
    assert w.grad is None and np.array_equal(w.data, before, equal_nan=True)


def test_the_reverse_task_stops_on_a_non_finite_gradient(monkeypatch):
    import transformer.reverse_task as reverse_task

    def clip(params, max_norm):
        raise FloatingPointError("clip_grad_norm_: the gradient norm is inf")
    monkeypatch.setattr(train_mod.optim, "clip_grad_norm_", clip)
    with pytest.raises(TrainingDiverged, match="gradient norm became non-finite at step 0"):
        reverse_task.train_reverse(steps=2, batch_size=2, max_len=3, n_eval=2, progress=False)


def test_save_checkpoint_refuses_nan_and_keeps_the_previous_one(tmp_path):
    save_checkpoint(tmp_path, {"w": np.ones(3)}, {"step": 1})
    with pytest.raises(CheckpointError, match="NaN or inf"):
        save_checkpoint(tmp_path, {"w": np.array([1.0, np.inf, 0])}, {"step": 2})
    state, meta, _ = load_checkpoint(tmp_path)
    assert meta["step"] == 1 and (state["w"] == 1).all()


def test_cli_nan_loss_is_one_line_naming_the_step(tmp_path, data, monkeypatch):
    real = Trainer.train_step

    def step(self):
        if self.step == 3:
            poison(self)
        return real(self)
    monkeypatch.setattr(Trainer, "train_step", step)
    out = tmp_path / "run"
    r = invoke("train", "--data", data, "--out", out, "--max-iters", 10, "--eval-interval", 2, *TINY)
    assert r.exit_code == 1
    one_error_line(r, "training stopped", "at step 3", "last good checkpoint (step 2)")
    assert load_checkpoint(out)[1]["step"] == 2


@pytest.mark.parametrize("option", ["--lr", "--weight-decay", "--grad-clip", "--dropout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_training_options_are_usage_errors(option, value, tmp_path):
    r = invoke("train", "--out", tmp_path / "run", option, value)
    assert r.exit_code == 2
    one_error_line(r, option)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field", ["lr", "min_lr", "weight_decay", "grad_clip"])
def test_train_config_refuses_non_finite_numbers(field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: float("nan")})


# ----------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_in_the_cli_saves_the_current_step_and_prints_the_resume_command(tmp_path, data, monkeypatch):
    real = Trainer.train_step

    def step(self):
        if self.step == 5:
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(Trainer, "train_step", step)
    out = tmp_path / "run"
    r = invoke("train", "--data", data, "--out", out, "--max-iters", 12, "--eval-interval", 4, *TINY)
    assert r.exit_code == 130 and "Traceback" not in r.output, r.output
    assert load_checkpoint(out)[1]["step"] == 5                      # not the last evaluation (4)
    assert "saved a checkpoint at step 5" in r.output
    command = next(line for line in r.output.splitlines() if line.startswith("tx train"))
    assert command == f"tx train --out {shlex.quote(str(out))} --resume --data {shlex.quote(str(data))}"
    monkeypatch.undo()
    again = invoke(*shlex.split(command)[1:])                        # the printed command continues
    assert again.exit_code == 0, again.output
    assert load_checkpoint(out)[1]["step"] == 12


def test_ctrl_c_during_an_update_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    t = tiny_trainer(tmp_path)
    real_step = t.optimizer.step

    def torn():
        if t.step == 6:
            raise KeyboardInterrupt                                  # inside optimizer.step()
        real_step()
    t.optimizer.step = torn
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert t.interrupted_at is None and load_checkpoint(tmp_path)[1]["step"] == 4


@pytest.mark.skipif(not TX.exists(), reason="the `tx` console script is not installed next to this Python")
def test_sigint_to_a_real_training_process(tmp_path, data):
    """A real Ctrl-C: the step in progress finishes, a checkpoint is saved there (eval only at
    step 0), the progress bar's line is ended and the resume command stands on its own line."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    args = [str(TX), "train", "--data", str(data), "--out", str(out), "--max-iters", "1000000",
            "--eval-interval", "1000000", *[a for a in TINY if a != "--no-progress"], "--progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (out / "meta.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)                                                  # some steps after step 0
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    step = load_checkpoint(out)[1]["step"]
    assert step > 0
    lines = stderr.split("\n")                 # not splitlines(): a "\r" of the bar must not count as a line end
    assert f"tx train --out {out} --resume --data {data}" in lines, stderr
    assert any(line.startswith(f"interrupted: saved a checkpoint at step {step}") for line in lines), stderr


# ----------------------------------------------------------------------------- metrics.jsonl
def parse_strict(line):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(line, parse_constant=refuse)


def test_metrics_are_strict_json_with_null_for_nan(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "estimate_loss", lambda model, batches: float("nan"))
    tiny_trainer(tmp_path, max_iters=2, eval_interval=1).run()
    rows = [parse_strict(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["val_loss"] is None and r["train_loss"] is None for r in rows)


def test_resume_drops_a_truncated_last_metrics_line_with_a_note(tmp_path, data):
    out = tmp_path / "run"
    assert invoke("train", "--data", data, "--out", out, "--max-iters", 4, "--eval-interval", 2, *TINY).exit_code == 0
    path = out / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 6, "train_lo')       # a crash while writing a row
    r = invoke("train", "--data", data, "--out", out, "--max-iters", 6, "--eval-interval", 2, "--resume", *TINY)
    assert r.exit_code == 0, r.output
    assert "note:" in r.output and "truncated last line" in r.output
    assert [parse_strict(line)["step"] for line in path.read_text().splitlines()] == [0, 2, 4, 6]


def test_resume_refuses_a_broken_line_in_the_middle(tmp_path):
    tiny_trainer(tmp_path, max_iters=4).run()
    path = tmp_path / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("not json\n" + "\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match="line 1"):
        tiny_trainer(tmp_path, max_iters=8, resume=True)


def test_old_metrics_with_nan_are_rewritten_strict_on_resume(tmp_path):
    tiny_trainer(tmp_path, max_iters=4).run()
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "train_loss": NaN, "val_loss": 1.0, "lr": 0.001, "elapsed": 0.0}\n')
    tiny_trainer(tmp_path, max_iters=8, resume=True)
    assert parse_strict(path.read_text().splitlines()[0])["train_loss"] is None


# ----------------------------------------------------------------------------- loading a tampered checkpoint
@pytest.fixture
def saved(tmp_path):
    """A tiny trained checkpoint folder."""
    out = tmp_path / "ckpt"
    tiny_trainer(out, max_iters=2, eval_interval=2).run()
    return out


def edit_meta(folder, change):
    path = Path(folder) / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def rewrite_model_arrays(folder, change):
    """Replace the model's arrays by change(arrays), with a matching checksum and size: only
    the content is wrong, so the loader must look at what the arrays are."""
    meta = json.loads((Path(folder) / "meta.json").read_text())
    name = meta["files"]["model"]
    with np.load(Path(folder) / name) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    (Path(folder) / name).write_bytes(data)
    meta["sha256"][name] = ckpt.hashlib.sha256(data).hexdigest()
    meta["bytes"][name] = len(data)
    (Path(folder) / "meta.json").write_text(json.dumps(meta))


def sample_error(folder):
    return invoke("sample", "--ckpt", folder, "--max-new-tokens", 2)


@pytest.mark.parametrize("entry", ["/dev/zero", "../model.npz", "sub/model-1.npz", ".hidden.npz", "..", "",
                                   123, None, "model.txt"])
def test_files_named_in_meta_must_be_plain_names_inside_the_folder(saved, entry):
    edit_meta(saved, lambda m: m["files"].__setitem__("model", entry))
    with pytest.raises(CheckpointError, match="files.model must be a file name inside"):
        load_checkpoint(saved)
    one_error_line(sample_error(saved), "files.model")


def test_a_symlink_to_dev_zero_is_not_read(saved):
    """The name is plain, but the file is a link to a device that never ends: refused unread."""
    meta = json.loads((saved / "meta.json").read_text())
    name = meta["files"]["model"]
    (saved / name).unlink()
    (saved / name).symlink_to("/dev/zero")
    one_error_line(sample_error(saved), "not a regular file")


def test_a_folder_in_place_of_an_array_file(saved):
    name = json.loads((saved / "meta.json").read_text())["files"]["model"]
    (saved / name).unlink()
    (saved / name).mkdir()
    one_error_line(sample_error(saved), "not a regular file")


def test_the_size_is_checked_before_the_file_is_read(saved, monkeypatch):
    name = json.loads((saved / "meta.json").read_text())["files"]["model"]
    with open(saved / name, "ab") as f:
        f.write(b"\0" * 10)
    read = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or real(self))
    with pytest.raises(CheckpointError, match="bytes"):
        load_checkpoint(saved)
    assert name not in read


@pytest.mark.parametrize("change, needle", [
    (lambda m: m.pop("model_config"), "model_config is missing"),
    (lambda m: m.__setitem__("model_config", [1, 2]), "model_config is missing or not an object"),
    (lambda m: m["model_config"].__setitem__("n_embd", "8"), "n_embd must be an integer"),
    (lambda m: m["model_config"].__setitem__("n_head", 0), "n_head must be positive"),
    (lambda m: m["model_config"].__setitem__("flux", 1), "unknown keys ['flux']"),
    (lambda m: m["vocab"].pop(), "vocab has"),
    (lambda m: m.__setitem__("vocab", "abc"), "vocab must be a list"),
    (lambda m: m["vocab"].__setitem__(0, "ab"), "vocab must be a list of single characters"),
    (lambda m: m["vocab"].__setitem__(1, m["vocab"][0]), "repeated"),
    (lambda m: m.pop("vocab"), "vocab must be a list"),
    (lambda m: m["files"].pop("model"), "files must name 'model'"),
    (lambda m: m["files"].__setitem__("extra", "x.npz"), "files must name 'model'"),
    (lambda m: m.__setitem__("files", ["model.npz"]), "not a tinygrad_tx-checkpoint-1 file"),
    (lambda m: m.__setitem__("sha256", {}), "no sha256"),
    (lambda m: m.__setitem__("bytes", {}), "no byte count"),
    (lambda m: m.pop("optim"), "no 'optim' state"),
], ids=["no-model-config", "model-config-list", "n_embd-str", "n_head-0", "unknown-key", "short-vocab",
        "vocab-str", "vocab-multichar", "vocab-repeat", "no-vocab", "no-model-file", "extra-file", "files-list",
        "no-sha", "no-bytes", "no-optim"])
def test_malformed_meta_is_one_line_from_the_cli(saved, change, needle):
    edit_meta(saved, change)
    one_error_line(sample_error(saved), needle)


@pytest.mark.parametrize("change, needle", [
    (lambda a: a.pop("ln_f.weight"), "missing ['ln_f.weight']"),
    (lambda a: a.__setitem__("extra.weight", np.zeros(3, np.float32)), "unexpected ['extra.weight']"),
    (lambda a: a.__setitem__("ln_f.weight", np.zeros(5, np.float32)), "ln_f.weight has shape (5,)"),
    (lambda a: a.__setitem__("ln_f.weight", np.zeros(8, np.int64)), "ln_f.weight has shape (8,) int64"),
])
def test_arrays_that_do_not_match_the_config_are_one_line(saved, change, needle):
    rewrite_model_arrays(saved, change)
    with pytest.raises(CheckpointError, match="arrays do not match|has shape"):
        load_model(saved)
    one_error_line(sample_error(saved), needle)


@pytest.mark.parametrize("change, needle", [
    (lambda m: m.pop("step"), "step is missing or mistyped"),
    (lambda m: m.__setitem__("step", -3), "step must be >= 0"),
    (lambda m: m.__setitem__("batch_rng", "x"), "batch_rng is missing or mistyped"),
    (lambda m: m.pop("train_config"), "train_config is missing or mistyped"),
])
def test_malformed_training_state_is_one_line_on_resume(saved, change, needle):
    edit_meta(saved, change)
    r = invoke("train", "--out", saved, "--resume", "--max-iters", 4, "--no-progress")
    one_error_line(r, "--resume", needle)


@pytest.mark.parametrize("text, needle", [("{not json", "not valid JSON"), ("[1, 2]", "not a"), ("", "not valid JSON")])
def test_meta_that_is_not_a_json_object_is_one_line(saved, text, needle):
    (saved / "meta.json").write_text(text)
    one_error_line(sample_error(saved), needle)
    one_error_line(invoke("train", "--out", saved, "--resume", "--no-progress"), needle)


def meta_paths(meta, prefix=()):
    """Every key of meta.json, and the keys inside its configs and file tables."""
    for k, v in meta.items():
        yield prefix + (k,)
        if isinstance(v, dict) and k in ("model_config", "train_config", "files", "data", "optim"):
            yield from meta_paths(v, prefix + (k,))


def test_no_mistyped_or_missing_meta_key_crashes_the_cli(saved, tmp_path):
    """Each key of meta.json in turn set to null, to a string or deleted: `tx sample` and
    `tx train --resume` either work or fail with one line, never a traceback."""
    import shutil
    meta = json.loads((saved / "meta.json").read_text())
    crashes = []
    for path in meta_paths(meta):
        for value in (None, "x", KeyError):
            folder = tmp_path / "case"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(saved, folder)

            def change(m):
                for k in path[:-1]:
                    m = m[k]
                m.pop(path[-1]) if value is KeyError else m.__setitem__(path[-1], value)
            edit_meta(folder, change)
            for args in (["sample", "--ckpt", folder, "--max-new-tokens", 2],
                         ["train", "--out", folder, "--resume", "--max-iters", 3, "--no-progress"]):
                r = invoke(*args)
                if r.exception is not None and not isinstance(r.exception, SystemExit):
                    crashes.append((path, value, args[0], repr(r.exception)))
    assert not crashes, crashes
