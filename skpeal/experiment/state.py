"""Run state on disk: the lock on ``--out``, the configuration, the per-(strategy, seed) files.

A run holds an exclusive lock on its folder (``<out>/.skpeal.lock``, ``fcntl.flock``): a
second process on the same folder is refused, with or without ``overwrite``. Every state
file carries the hash of the configuration that wrote it and is validated when it is read
(JSON, structure, labelled indices in the pool and unique, rounds consistent with them);
a state file that fails is named in the error together with the way out. The run's
images are fingerprinted in ``<out>/pool.json`` (:func:`pool_fingerprint`): a resume over
a changed pool (images added, removed or replaced) is refused, since the stored rounds
name images by their position in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_text

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock on --out there
    fcntl = None
from .config import ExperimentConfig

__all__ = ["check_pool", "config_hash", "locked", "pool_fingerprint", "prepare_out",
           "read_config", "read_state", "recorded_pool_size", "state_path", "write_config",
           "write_pool"]


def state_path(out: Path, strategy: str, seed: int) -> Path:
    return out / "state" / f"{strategy}__seed{seed}.json"


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def locked(out: Path):
    """Hold an exclusive lock on ``out`` (a second process is refused, naming the holder)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder")
    out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # not POSIX (Windows): runs are not locked there
        yield
        return
    fd = os.open(out / ".skpeal.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ValueError(
                f"{out} is in use by another skpeal run (process {holder}); wait for it to "
                "finish or stop it, or choose another --out (--overwrite does not apply to "
                "a running run)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_config(out: Path) -> dict:
    path = out / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{out} holds no skpeal run (no config.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} cannot be read ({exc}); rerun with --overwrite to start "
                         "the run afresh") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("strategies"), list):
        raise ValueError(f"{path} is not an skpeal configuration; rerun with --overwrite")
    return cfg


def prepare_out(out: Path, config: ExperimentConfig, overwrite: bool) -> None:
    cfg = config.to_dict()
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            old = None
            if not overwrite:
                raise ValueError(
                    f"{cfg_path} is not valid JSON ({exc}); pass --overwrite to discard the "
                    f"run in {out}, or choose another --out"
                ) from None
        if old != cfg:
            if not overwrite:
                changed = sorted(k for k in cfg if not isinstance(old, dict)
                                 or old.get(k) != cfg.get(k))
                raise ValueError(
                    f"{out} holds a run with another configuration (differs in: "
                    f"{', '.join(changed)}); choose another --out, or pass --overwrite to "
                    "discard it"
                )
            _discard(out)
    elif overwrite:
        _discard(out)
    if overwrite:  # also state files of another configuration under a matching config.json
        cfg_hash = config_hash(cfg)
        for p in out.glob("state/*.json"):
            try:
                ok = json.loads(p.read_text()).get("config_hash") == cfg_hash
            except (ValueError, AttributeError, OSError):
                ok = False
            if not ok:
                p.unlink()
    (out / "state").mkdir(parents=True, exist_ok=True)


def _discard(out: Path) -> None:
    """Remove what a run of another configuration left in ``out`` (state and adapters)."""
    for pattern in ("state/*.json", "adapters/*.safetensors", "config.json", "pool.json"):
        for p in out.glob(pattern):
            p.unlink()


_ROUND_KEYS = ("round", "n_labels", "accuracy", "macro_f1", "ece", "error_auroc", "fit_time",
               "query_time", "selected", "selected_labels", "reliability")


def read_state(path: Path, expected_hash: str, *, n_pool: int | None = None,
               max_rounds: int | None = None) -> dict:
    """Load and validate one state file; a bad one is named with the way out.

    Checks the structure, the configuration hash, that every labelled index is an
    integer in the pool, that none is labelled twice, and that the rounds' selections
    add up to the labelled list.
    """
    fix = "delete it to redo that strategy and seed, or choose another --out"

    def bad(why, way_out=fix):
        return ValueError(f"state file {path} {why}; {way_out}")

    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"is not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise bad(f"holds a {type(state).__name__}, not a JSON object")
    for key in ("strategy", "seed", "labelled", "rounds"):
        if key not in state:
            raise bad(f"has no {key!r} entry")
    other = ("rerun with --overwrite to discard the old run (run and report need a "
             "config.json that matches), or choose another --out")
    if "config_hash" not in state:
        raise bad("carries no configuration hash (written by an older skpeal): it cannot be "
                  "matched to this configuration", other)
    if state["config_hash"] != expected_hash:
        raise bad(f"was written by a run of another configuration (config_hash "
                  f"{state['config_hash']!r}, this configuration's {expected_hash!r})", other)
    name = f"{state['strategy']}__seed{state['seed']}.json"
    if name != path.name:
        raise bad(f"holds strategy {state['strategy']!r}, seed {state['seed']!r}, not what its "
                  "name says")
    labelled, rounds = state["labelled"], state["rounds"]
    if not isinstance(labelled, list) or not isinstance(rounds, list):
        raise bad("has 'labelled' or 'rounds' that is not a list")
    for i, v in enumerate(labelled):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad(f"has labelled[{i}] = {v!r}, not a pool index")
        if v < 0 or (n_pool is not None and v >= n_pool):
            raise bad(f"has labelled[{i}] = {v}, outside the pool [0, {n_pool or '...'})")
    if len(set(labelled)) != len(labelled):
        twice = next(v for v in labelled if labelled.count(v) > 1)
        raise bad(f"labels pool index {twice} twice")
    if max_rounds is not None and len(rounds) > max_rounds:
        raise bad(f"holds {len(rounds)} rounds, more than the configuration's {max_rounds}")
    selected = []
    for r, rec in enumerate(rounds):
        if not isinstance(rec, dict):
            raise bad(f"has round {r} that is not a JSON object")
        missing = [k for k in _ROUND_KEYS if k not in rec]
        if missing:
            raise bad(f"has round {r} without {missing}")
        if rec["round"] != r or not isinstance(rec["selected"], list):
            raise bad(f"has round {r} numbered {rec['round']!r} or without a selection list")
        selected += rec["selected"]
        if rec["n_labels"] != len(selected):
            raise bad(f"says round {r} had {rec['n_labels']!r} labels, but its selections "
                      f"add up to {len(selected)}")
    if selected != labelled:
        raise bad(f"has rounds whose selections ({len(selected)} images) do not match its "
                  f"labelled list ({len(labelled)} images)")
    return state


def write_config(out: Path, config: ExperimentConfig) -> None:
    """Write ``<out>/config.json`` (atomically)."""
    atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True))


def pool_fingerprint(data, root=None) -> dict:
    """A fingerprint of a run's images: their order, names (or pixels), sizes and labels.

    Parameters
    ----------
    data : sklearn.utils.Bunch
        ``X_train``, ``y_train``, ``X_test``, ``y_test`` (arrays, or arrays of paths).
    root : str or path-like, optional
        The data folder: paths are fingerprinted relative to it (a moved folder is the
        same pool).

    Returns
    -------
    fingerprint : dict
        ``sha256`` (hex), ``n_pool`` and ``n_test``.
    """
    h = hashlib.sha256()
    root = None if root is None or not os.path.isdir(root) else os.path.realpath(root)
    for split in ("train", "test"):
        X, y = data[f"X_{split}"], np.asarray(data[f"y_{split}"])
        if getattr(getattr(X, "dtype", None), "kind", "") == "O":  # paths: name and size of each
            for p in X:
                p = os.fspath(p)
                name = os.path.relpath(p, root) if root else p
                try:
                    size = os.stat(p).st_size
                except OSError:
                    size = -1
                h.update(f"{name}\0{size}\0".encode(errors="surrogateescape"))
        else:
            h.update(np.ascontiguousarray(X).tobytes())
        h.update(b"|" + np.ascontiguousarray(y).tobytes() + b"|")
    return {"sha256": h.hexdigest(), "n_pool": int(len(data["y_train"])),
            "n_test": int(len(data["y_test"]))}


def check_pool(out: Path, fingerprint: dict, overwrite: bool) -> None:
    """Refuse to resume a run whose images changed (see :func:`write_pool`).

    With ``overwrite``, a run over other images is discarded instead.
    """
    path = out / "pool.json"
    old = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError):
            old = {}
    if isinstance(old, dict) and old.get("sha256") == fingerprint["sha256"]:
        return
    if old is not None and any(out.glob("state/*.json")):
        if not overwrite:
            was = (f"{old.get('n_pool')} pool / {old.get('n_test')} test images then, "
                   if isinstance(old, dict) else "")
            raise ValueError(
                f"the images of the run in {out} changed since it started ({was}"
                f"{fingerprint['n_pool']} / {fingerprint['n_test']} now: images added, "
                "removed, renamed or replaced); its stored rounds name images by position, "
                "so it cannot resume. Put the data back as it was, or rerun with "
                "--overwrite to start afresh on the new images, or choose another --out")
        _discard(out)
        (out / "state").mkdir(parents=True, exist_ok=True)


def write_pool(out: Path, fingerprint: dict) -> None:
    """Record the run's image fingerprint in ``<out>/pool.json`` (atomically)."""
    atomic_write_text(out / "pool.json", json.dumps(fingerprint, indent=2))


def recorded_pool_size(out: Path) -> int | None:
    """The pool size recorded in ``<out>/pool.json`` (None for a run without one)."""
    try:
        n = json.loads((Path(out) / "pool.json").read_text()).get("n_pool")
    except (OSError, ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
