"""Checkpoints that never execute code on load: arrays in .npz (allow_pickle=False), everything
else in JSON.

Atomic: array files are named by their content hash (model-<sha>.npz), written to a temporary
name and renamed into place; then meta.json, which names them and records each SHA-256, is
replaced in one rename: the commit point. A crash at any moment leaves the previous meta.json
and the files it names intact. Old array files are removed only after the commit. A truncated
or tampered file fails its checksum on load with a clear error.

Never saved: weights or optimizer state holding NaN or inf (the last good checkpoint stays).
Never read: a file that meta.json names outside the folder (an absolute path, `..`, a
symlink) or that is not a regular file (/dev/zero would be read forever), or whose size differs
from the size recorded at save time."""
import hashlib
import io
import json
import os
import pathlib
import re
import stat
import tempfile
import zipfile

import numpy as np

META_FILE = "meta.json"
FORMAT = "tinygrad_tx-checkpoint-1"


class CheckpointError(Exception):
    pass


class NonFiniteState(CheckpointError):
    """save_checkpoint was handed NaN or inf: nothing was written."""


def _atomic_write(path, data):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _npz_bytes(arrays):
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _flatten_optim(sd):
    arrays, state = {}, {}
    for i, st in sd["state"].items():
        state[str(i)] = {}
        for k, v in st.items():
            if isinstance(v, np.ndarray):
                arrays[f"{i}.{k}"] = v
                state[str(i)][k] = {"array": f"{i}.{k}"}
            else:
                state[str(i)][k] = v
    return arrays, {"param_groups": sd["param_groups"], "state": state}


def _unflatten_optim(meta, arrays):
    state = {}
    for i, st in meta["state"].items():
        state[int(i)] = {k: (arrays[v["array"]] if isinstance(v, dict) else v) for k, v in st.items()}
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"param_groups": groups, "state": state}


def _check_finite(arrays, what):
    for k, v in arrays.items():
        if v.dtype.kind in "fc" and not np.isfinite(v).all():
            raise NonFiniteState(f"checkpoint: not saved: {what} {k!r} holds NaN or inf "
                                  "(the previous checkpoint is kept)")


def save_checkpoint(out_dir, model_state, meta, optim_state=None):
    """model_state: name -> array; meta: JSON-able dict (config, vocab, step, rng states, ...);
    optim_state: an optimizer's state_dict() or None. Refuses non-finite arrays."""
    out = pathlib.Path(out_dir)
    model_state = {k: np.asarray(v) for k, v in model_state.items()}
    _check_finite(model_state, "parameter")
    meta = dict(meta, format=FORMAT)
    if optim_state is not None:
        arrays, meta["optim"] = _flatten_optim(optim_state)
        _check_finite(arrays, "optimizer state")
    out.mkdir(parents=True, exist_ok=True)
    blobs = {"model": _npz_bytes(model_state)}
    if optim_state is not None:
        blobs["optim"] = _npz_bytes(arrays)
    meta["files"], meta["sha256"], meta["bytes"] = {}, {}, {}
    for kind, data in blobs.items():
        sha = hashlib.sha256(data).hexdigest()
        name = f"{kind}-{sha[:16]}.npz"
        meta["files"][kind], meta["sha256"][name], meta["bytes"][name] = name, sha, len(data)
        if not (out / name).is_file():
            _atomic_write(out / name, data)
    _atomic_write(out / META_FILE, json.dumps(meta, indent=1).encode())   # the commit point
    for stale in list(out.glob("model-*.npz")) + list(out.glob("optim-*.npz")):
        if stale.name not in meta["sha256"]:
            stale.unlink(missing_ok=True)


def _load_npz(path, expected_sha, expected_bytes):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint: {path} is missing") from None
    if not stat.S_ISREG(st.st_mode):          # a symlink, a device (/dev/zero never ends), a folder
        raise CheckpointError(f"checkpoint: {path} is not a regular file")
    if expected_bytes is not None and st.st_size != expected_bytes:
        raise CheckpointError(f"checkpoint: {path} has {st.st_size:,} bytes, {META_FILE} says {expected_bytes:,} "
                              "(truncated, corrupted or modified)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha:
        raise CheckpointError(f"checkpoint: {path} does not match the checksum in {META_FILE} "
                              "(truncated, corrupted or modified)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint: cannot read {path}: {e}") from None


def _file_entry(meta, kind, where):
    """The array file meta.json names for `kind`: a plain file name in the folder (no path),
    with its SHA-256 and (checkpoints written since sizes were recorded) its byte count."""
    name = meta["files"].get(kind)
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
        raise CheckpointError(f"checkpoint: {where}: files.{kind} must be a file name inside the checkpoint "
                              f"folder like {kind}-0123abcd.npz, got {name!r}")
    sha = meta["sha256"].get(name) if isinstance(meta.get("sha256"), dict) else None
    if not isinstance(sha, str):
        raise CheckpointError(f"checkpoint: {where}: no sha256 recorded for {name}")
    size = meta.get("bytes", {}).get(name) if isinstance(meta.get("bytes"), dict) else None
    if "bytes" in meta and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise CheckpointError(f"checkpoint: {where}: no byte count recorded for {name}")
    return name, sha, size


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\.npz")     # no '/', no leading '.', so no '..'


def load_checkpoint(ckpt_dir):
    """-> (model_state, meta, optim_state or None). Raises CheckpointError with the reason."""
    d = pathlib.Path(ckpt_dir)
    if not (d / META_FILE).is_file():
        raise CheckpointError(f"checkpoint: no {META_FILE} in {d} (not a checkpoint folder?)")
    where = d / META_FILE
    try:
        meta = json.loads(where.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint: {where} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CheckpointError(f"checkpoint: {where} is not a {FORMAT} file")
    unknown = sorted(set(meta["files"]) - {"model", "optim"})
    if unknown or "model" not in meta["files"]:
        raise CheckpointError(f"checkpoint: {where}: files must name 'model' (and 'optim'), "
                              f"got {sorted(meta['files'])}")
    if "optim" in meta["files"] and not isinstance(meta.get("optim"), dict):
        raise CheckpointError(f"checkpoint: {where}: names an optimizer file but has no 'optim' state")

    def arrays(kind):
        return _load_npz(d / name_sha_size[kind][0], *name_sha_size[kind][1:])
    name_sha_size = {kind: _file_entry(meta, kind, where) for kind in meta["files"]}   # all checked before any read
    try:
        optim_state = _unflatten_optim(meta["optim"], arrays("optim")) if "optim" in meta["files"] else None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint: {where}: the optimizer state does not match its array file "
                              f"({type(e).__name__}: {e})") from None
    return arrays("model"), meta, optim_state
