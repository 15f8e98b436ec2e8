"""Checkpoints that never execute code on load: arrays in .npz (allow_pickle=False), everything
else in JSON.

Atomic: array files are named by their content hash (model-<sha>.npz), written to a temporary
name and renamed into place; then meta.json, which names them and records each SHA-256, is
replaced in one rename: the commit point. A crash at any moment leaves the previous meta.json
and the files it names intact. Old array files are removed only after the commit. A truncated
or tampered file fails its checksum on load with a clear error."""
import hashlib
import io
import json
import os
import pathlib
import tempfile
import zipfile

import numpy as np

META_FILE = "meta.json"
FORMAT = "tinygrad_tx-checkpoint-1"


class CheckpointError(Exception):
    pass


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


def save_checkpoint(out_dir, model_state, meta, optim_state=None):
    """model_state: name -> array; meta: JSON-able dict (config, vocab, step, rng states, ...);
    optim_state: an optimizer's state_dict() or None."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blobs = {"model": _npz_bytes(model_state)}
    meta = dict(meta, format=FORMAT)
    if optim_state is not None:
        arrays, meta["optim"] = _flatten_optim(optim_state)
        blobs["optim"] = _npz_bytes(arrays)
    meta["files"], meta["sha256"] = {}, {}
    for kind, data in blobs.items():
        sha = hashlib.sha256(data).hexdigest()
        name = f"{kind}-{sha[:16]}.npz"
        meta["files"][kind], meta["sha256"][name] = name, sha
        if not (out / name).is_file():
            _atomic_write(out / name, data)
    _atomic_write(out / META_FILE, json.dumps(meta, indent=1).encode())   # the commit point
    for stale in list(out.glob("model-*.npz")) + list(out.glob("optim-*.npz")):
        if stale.name not in meta["sha256"]:
            stale.unlink(missing_ok=True)


def _load_npz(path, expected_sha):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint: {path} is missing") from None
    if hashlib.sha256(data).hexdigest() != expected_sha:
        raise CheckpointError(f"checkpoint: {path} does not match the checksum in {META_FILE} "
                              "(truncated, corrupted or modified)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint: cannot read {path}: {e}") from None


def load_checkpoint(ckpt_dir):
    """-> (model_state, meta, optim_state or None). Raises CheckpointError with the reason."""
    d = pathlib.Path(ckpt_dir)
    if not (d / META_FILE).is_file():
        raise CheckpointError(f"checkpoint: no {META_FILE} in {d} (not a checkpoint folder?)")
    try:
        meta = json.loads((d / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint: {d / META_FILE} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "files" not in meta:
        raise CheckpointError(f"checkpoint: {d / META_FILE} is not a {FORMAT} file")

    def arrays(kind):
        name = meta["files"][kind]
        return _load_npz(d / name, meta["sha256"].get(name))
    optim_state = _unflatten_optim(meta["optim"], arrays("optim")) if "optim" in meta["files"] else None
    return arrays("model"), meta, optim_state
