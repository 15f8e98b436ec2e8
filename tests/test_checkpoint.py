"""Checkpoints: round trip, no unpickling, checksums, atomic replace, cleanup, and training
resumed from a checkpoint giving bitwise the same result as an uninterrupted run."""
import io
import json

import numpy as np
import pytest

import transformer.checkpoint as ckpt
from tinygrad_tx import backend, optim
from transformer import (CheckpointError, GPT, GPTConfig, TextDataset, TrainConfig, Trainer,
                         load_checkpoint, save_checkpoint)


def small_model(seed=0):
    backend.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=8))


def trained_state(seed=0):
    """(model, optimizer) after one AdamW step, so the optimizer has per-parameter state."""
    model = small_model(seed)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    _, loss = model(np.array([[1, 2, 3, 4]]), np.array([[2, 3, 4, 5]]))
    loss.backward()
    opt.step()
    return model, opt


def array_files(d):
    return sorted(p.name for p in d.glob("*.npz"))


# ---------------------------------------------------------------- round trip and refusals

def test_round_trip(tmp_path):
    model, opt = trained_state()
    meta = {"step": 3, "vocab": list("abc"), "nested": {"x": [1, 2.5]}}
    save_checkpoint(tmp_path, model.state_dict(), meta, opt.state_dict())
    state, meta2, optim_state = load_checkpoint(tmp_path)

    ref = model.state_dict()
    assert set(state) == set(ref)
    for k in ref:
        assert state[k].dtype == ref[k].dtype
        np.testing.assert_array_equal(state[k], ref[k])
    assert {k: meta2[k] for k in meta} == meta
    sd = opt.state_dict()
    assert optim_state["param_groups"] == sd["param_groups"]
    assert set(optim_state["state"]) == set(sd["state"])
    for i, st in sd["state"].items():
        assert set(optim_state["state"][i]) == set(st)
        for k, v in st.items():
            np.testing.assert_array_equal(optim_state["state"][i][k], v)
    # and it loads back into a fresh model and optimizer
    fresh = small_model(seed=1)
    fresh.load_state_dict(state)
    optim.AdamW(fresh.parameters(), lr=1e-2).load_state_dict(optim_state)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v, ref[k])

    save_checkpoint(tmp_path / "no_optim", model.state_dict(), meta)
    assert load_checkpoint(tmp_path / "no_optim")[2] is None


UNPICKLED = []


def _record_unpickling(tag):
    UNPICKLED.append(tag)
    return tag


class Evil:
    """Pickling stores a call to _record_unpickling; unpickling would run it."""

    def __reduce__(self):
        return (_record_unpickling, ("code ran",))


def test_loader_never_unpickles(tmp_path):
    save_checkpoint(tmp_path, small_model().state_dict(), {"step": 0})
    meta = json.loads((tmp_path / "meta.json").read_text())
    buf = io.BytesIO()
    np.savez(buf, evil=np.array([Evil()], dtype=object))                 # pickled inside the npz
    data = buf.getvalue()
    name = meta["files"]["model"]
    (tmp_path / name).write_bytes(data)
    meta["sha256"][name] = ckpt.hashlib.sha256(data).hexdigest()          # the checksum passes
    meta["bytes"][name] = len(data)                                       # and the size
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path)
    assert UNPICKLED == []


def test_truncated_array_file_fails_checksum(tmp_path):
    save_checkpoint(tmp_path, small_model().state_dict(), {"step": 0})
    path = tmp_path / json.loads((tmp_path / "meta.json").read_text())["files"]["model"]
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="has .* bytes.*truncated"):        # caught by its size, unread
        load_checkpoint(tmp_path)
    path.write_bytes(b"\0" * json.loads((tmp_path / "meta.json").read_text())["bytes"][path.name])
    with pytest.raises(CheckpointError, match="checksum"):                     # right size, wrong content
        load_checkpoint(tmp_path)


def test_missing_array_file(tmp_path):
    save_checkpoint(tmp_path, small_model().state_dict(), {"step": 0})
    (tmp_path / json.loads((tmp_path / "meta.json").read_text())["files"]["model"]).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    ('{"format": "something-else", "files": {}}', "not a"),
    ('["a", "list"]', "not a"),
    ('{"step": 1}', "not a"),
    (b"\xff\xfe\x00", "not valid JSON"),
])
def test_tampered_meta(tmp_path, text, match):
    save_checkpoint(tmp_path, small_model().state_dict(), {"step": 0})
    meta = tmp_path / "meta.json"
    meta.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="meta.json"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)                                         # exists, but empty


# ---------------------------------------------------------------- atomicity and cleanup

def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    first = small_model(seed=0).state_dict()
    save_checkpoint(tmp_path, first, {"step": 1})
    real_replace = ckpt.os.replace

    def crash_on_commit(src, dst):
        if str(dst).endswith("meta.json"):
            raise OSError("simulated crash while committing meta.json")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_commit)
    second = small_model(seed=1).state_dict()
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, second, {"step": 2})
    monkeypatch.undo()

    state, meta, _ = load_checkpoint(tmp_path)
    assert meta["step"] == 1
    for k, v in first.items():
        np.testing.assert_array_equal(state[k], v)
    assert not np.array_equal(second["wte.weight"], first["wte.weight"])   # the crash really lost something
    assert not list(tmp_path.glob("*.tmp"))                               # the temp file was removed


def test_old_array_files_are_removed_after_commit(tmp_path):
    model, opt = trained_state()
    save_checkpoint(tmp_path, model.state_dict(), {"step": 1}, opt.state_dict())
    before = array_files(tmp_path)
    assert len(before) == 2
    save_checkpoint(tmp_path, small_model(seed=5).state_dict(), {"step": 2}, opt.state_dict())
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert array_files(tmp_path) == sorted(meta["files"].values())
    assert array_files(tmp_path) != before
    assert meta["files"]["optim"] in before                               # unchanged content, same file
    save_checkpoint(tmp_path, small_model(seed=5).state_dict(), {"step": 3})      # no optimizer now
    assert array_files(tmp_path) == [json.loads((tmp_path / "meta.json").read_text())["files"]["model"]]


# ---------------------------------------------------------------- trainer resume

TEXT = "some short text repeated" * 50


def trainer_configs(n_embd=16):
    ds = TextDataset(TEXT)
    model_cfg = GPTConfig(vocab_size=ds.tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2,
                          n_embd=n_embd, dropout=0.1)
    train_cfg = TrainConfig(max_iters=12, eval_interval=4, eval_iters=2, batch_size=4)
    return model_cfg, train_cfg, ds


def metrics_rows(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line]
    for r in rows:
        r.pop("elapsed")
    return rows


@pytest.mark.parametrize("where", ["after-step", "mid-step"])
def test_resume_is_bitwise_equal_to_uninterrupted(tmp_path, where):
    """Ctrl-C saves a checkpoint at the step it lands on (6), not at the last evaluation (4):
    after step 6 (from the callback), or inside step 7 once its batch was drawn (the half
    step is undone: the batch RNG goes back to where step 7 started)."""
    model_cfg, train_cfg, ds = trainer_configs()
    a = Trainer(model_cfg, train_cfg, ds, tmp_path / "a", progress=False)
    a.run()

    def interrupt(step, loss):
        if step == 6 and where == "after-step":
            raise KeyboardInterrupt

    out_b = tmp_path / "b"
    interrupted = Trainer(model_cfg, train_cfg, ds, out_b, progress=False, callback=interrupt)
    if where == "mid-step":
        real_get_batch = ds.get_batch

        def get_batch(split, *args):
            batch = real_get_batch(split, *args)
            if split == "train" and interrupted.step == 6:
                raise KeyboardInterrupt
            return batch
        interrupted.data = type("Data", (), {"get_batch": staticmethod(get_batch), "tokenizer": ds.tokenizer,
                                             "sha256": ds.sha256, "num_chars": ds.num_chars})()
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert interrupted.interrupted_at == 6
    assert load_checkpoint(out_b)[1]["step"] == 6                          # the step Ctrl-C landed on
    b = Trainer(model_cfg, train_cfg, ds, out_b, resume=True, progress=False)
    assert b.step == 6
    b.run()

    assert a.step == b.step == 12
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert sa[k].tobytes() == sb[k].tobytes(), k                      # bitwise
    assert metrics_rows(tmp_path / "a") == metrics_rows(out_b)
    assert [r["step"] for r in metrics_rows(out_b)] == [0, 4, 8, 12]
    state, meta, _ = load_checkpoint(out_b)
    assert meta["step"] == 12
    for k in sa:
        np.testing.assert_array_equal(state[k], sa[k])


def test_resume_with_a_different_model_config_is_refused(tmp_path):
    model_cfg, train_cfg, ds = trainer_configs()
    train_cfg.max_iters = 1
    Trainer(model_cfg, train_cfg, ds, tmp_path, progress=False).run()
    other_cfg = trainer_configs(n_embd=8)[0]
    with pytest.raises(CheckpointError, match="model config") as e:
        Trainer(other_cfg, train_cfg, ds, tmp_path, resume=True, progress=False)
    assert str(e.value).endswith("n_embd: checkpoint has 16, requested 8")   # the one field, not both dicts
    with pytest.raises(CheckpointError, match="resume"):
        Trainer(model_cfg, train_cfg, ds, tmp_path / "empty", resume=True, progress=False)
