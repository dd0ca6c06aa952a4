"""What a project folder holds before any model: its image files, its class names, its
settings, and with ``init="random"`` or ``"pixels"`` its first batch
(:func:`start_project_without_model`).

Nothing here imports torch or scikit-learn at import time: a new ``skpeal label`` project
with a first batch picked without the model is made and served before torch is loaded
(scikit-learn is imported for the k-means of ``init="pixels"`` only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .._files import IMAGE_EXTENSIONS
from .._validation import check_int, derive_seed
from ._checks import NEW_PROJECT_CLASSES, check_classes
from .config import DEFAULT_STRATEGY, MODEL_FREE_INIT, ProjectSettings
from .store import LabelStore

__all__ = ["collect_images", "first_rows", "pixel_features", "start_project_without_model"]


def collect_images(source, *, exclude=None) -> list[str]:
    """Absolute paths of the images of ``source``.

    Parameters
    ----------
    source : str, path-like or sequence of them
        A folder (searched recursively for files with an extension in
        :data:`skpeal.datasets.IMAGE_EXTENSIONS`, skipping hidden folders), or a list of
        image files.
    exclude : path-like, optional
        A folder whose files are never taken (the project folder).

    Returns
    -------
    paths : list of str
        Sorted, absolute, symlinks resolved. Inside a folder, a file (or symlink) whose
        real location is outside the folder is left out, so nothing outside the folder
        can ever be served.

    Raises
    ------
    ValueError
        When a listed file or the folder does not exist, or no image is found.
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        root = os.fspath(Path(source).resolve())
        paths = sorted(set(_walk_images(root, None if excl is None else os.fspath(excl))))
        if not paths:
            raise ValueError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                             f"found under {os.fspath(source)!r}")
        return paths
    if isinstance(source, (str, os.PathLike)):
        raise ValueError(f"images: {os.fspath(source)!r} is not a folder")
    paths = []
    for p in source:
        real = Path(p).resolve()
        if not real.is_file():
            raise ValueError(f"images: {os.fspath(p)!r} is not a file")
        paths.append(os.fspath(real))
    if not paths:
        raise ValueError("images: the list of images is empty")
    return sorted(set(paths))


def _inside(path, folder) -> bool:
    """Whether the absolute ``path`` is ``folder`` or under it (plain string test)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_images(root, exclude):
    """The real paths of the image files under the resolved folder ``root`` (no hidden
    files or folders, nothing whose real location is outside ``root`` or inside
    ``exclude``).

    With :func:`os.scandir` and string tests: the folder is walked without following
    symlinked folders, so a plain file's path under the resolved ``root`` is its real
    path, and only symlinks need :func:`os.path.realpath` (100,000 files take about a
    second, not the half minute of a ``Path.resolve()`` per file).
    """
    stack = [root]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:  # unreadable folder: skipped, as os.walk does
            continue
        with entries:
            for e in entries:
                name = e.name
                if name.startswith("."):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                        continue
                    if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                        continue
                    if e.is_symlink():
                        real = os.path.realpath(e.path)
                        if not os.path.isfile(real) or not _inside(real, root):
                            continue
                    elif e.is_file(follow_symlinks=False):
                        real = e.path
                    else:
                        continue
                except OSError:  # vanished while listed
                    continue
                if exclude is not None and _inside(real, exclude):
                    continue
                yield real


#: Settings a project remembers (the session's parameters), with their defaults (the one
#: place they are written: :class:`~skpeal.labeling.config.ProjectSettings`).
SETTINGS = dataclasses.asdict(ProjectSettings())

#: Estimator parameters that may differ when a project is reopened: they change how a
#: model is trained or run, never what an adapter is or which backbone it belongs to.
RUNTIME_PARAMS = frozenset({"device", "verbose", "num_workers", "predict_batch_size",
                            "batch_size", "max_epochs", "feature_cache", "precision",
                            "random_state", "lr", "optimizer", "weight_decay"})


def round_adapter_path(project, rnd) -> Path:
    """Where round ``rnd``'s adapter of ``project`` is saved: ``models/round-N.safetensors``."""
    return Path(project) / "models" / f"round-{rnd}.safetensors"


def read_meta(project) -> dict:
    """The ``meta`` table of an existing project ({} for a new one), read only."""
    db = Path(project) / "labels.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{os.fspath(db)}?mode=ro", uri=True)
    try:
        return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def resolve_settings(project, stored: dict, given: dict) -> dict:
    """The session's settings: given ones, else the project's, else the defaults.

    A given value that differs from the project's raises: a project keeps its settings.
    """
    out = {}
    for key, default in SETTINGS.items():
        value = given.get(key)
        if value is None:
            out[key] = stored.get(key, default)
        elif key in stored and stored[key] != value:
            raise ValueError(
                f"{os.fspath(project)} is a project with {key}={stored[key]!r}; got "
                f"{key}={value!r}. Open it without {key}= (it remembers its settings), or "
                "use another project folder")
        else:
            out[key] = value
    return out


def estimator_params(est) -> dict:
    """The JSON-serialisable parameters of an estimator (what a project remembers)."""
    def plain(v):
        if isinstance(v, (str, int, float, bool)) or v is None:
            return True
        if isinstance(v, dict):  # adapter_params
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return isinstance(v, (list, tuple)) and all(plain(x) for x in v)

    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in est.get_params(deep=False).items() if plain(v)}


def check_estimator(project, stored: dict, est) -> None:
    """Raise when ``est`` is not the estimator the project was created with."""
    now = estimator_params(est)
    diff = sorted(k for k in set(stored) | set(now)
                  if k not in RUNTIME_PARAMS and stored.get(k) != now.get(k))
    if diff:
        what = ", ".join(f"{k}={stored.get(k)!r} (got {now.get(k)!r})" for k in diff)
        raise ValueError(
            f"{os.fspath(project)} is a project of another model: {what}. Open it without "
            "estimator= (it remembers its backbone), or use another project folder")


def resolve_strategy(strategy, stored):
    """``(query function, name to remember or None)`` of the session's ``strategy``."""
    from .. import strategies  # torch: only once a session is opened

    if strategy is None:
        if stored is not None and stored not in strategies.strategy_names():
            warnings.warn(f"the project last used the strategy {stored!r}, which is not "
                          "registered in this process (register it before opening the "
                          f"project); using {DEFAULT_STRATEGY!r}", stacklevel=3)
            stored = None
        strategy = stored or DEFAULT_STRATEGY
    if isinstance(strategy, str):
        record = strategies.get_strategy(strategy)  # an unknown name raises, naming them
        return record.query, record.name
    record = strategies.get_strategy(strategy, None)
    return strategy, None if record is None else record.name


#: A first batch with ``init="pixels"``: TypiClust on a random sample of up to
#: ``PIXEL_SAMPLE`` images, each shrunk to ``PIXEL_SIDE`` x ``PIXEL_SIDE`` RGB, centred and
#: projected on its ``PIXEL_DIMS`` first principal components. Files are read in the
#: sample's order until ``PIXEL_BYTES`` of them are read (and at least 4 per image to
#: pick): large files take long to decode (a 12-megapixel PNG about 0.3 s here).
PIXEL_SAMPLE, PIXEL_SIDE, PIXEL_DIMS, PIXEL_BYTES = 1000, 16, 32, 64 * 2**20


def _within_budget(images, least):
    """How many of ``images``, in order, to read: all, or once their files hold
    :data:`PIXEL_BYTES` (at least ``least``). Arrays are not counted (no file to decode)."""
    total = 0
    for k, im in enumerate(images):
        if k >= least and total >= PIXEL_BYTES:
            return k
        if isinstance(im, (str, os.PathLike)):
            with contextlib.suppress(OSError):
                total += os.stat(im).st_size
    return len(images)


def pixel_features(images):
    """The pixel features of ``init="pixels"`` (see :data:`PIXEL_SAMPLE`).

    Parameters
    ----------
    images : sequence of path-like or array-like
        Image files (a JPEG is decoded at a fraction of its size) or image arrays (uint8,
        or floats in [0, 1]; grey or RGB).

    Returns
    -------
    features : ndarray of shape (n_readable, <= PIXEL_DIMS)
        One row per image that could be read.
    readable : ndarray of bool of shape (len(images),)
        Which images could be read (a damaged file is left out, not an error).
    """
    side, rows, ok = PIXEL_SIDE, [], []
    for im in images:
        try:
            if isinstance(im, (str, os.PathLike)):
                with Image.open(im) as f:
                    f.draft("RGB", (4 * side, 4 * side))
                    img = ImageOps.exif_transpose(f).convert("RGB")
            else:
                a = np.asarray(im)
                if a.dtype != np.uint8:
                    a = np.clip(np.rint(a * 255 if a.max() <= 1 else a), 0, 255).astype(np.uint8)
                img = Image.fromarray(a.squeeze()).convert("RGB")
            img = img.resize((side, side), Image.Resampling.BOX)
        except (OSError, ValueError, TypeError, Image.DecompressionBombError):
            ok.append(False)
            continue
        rows.append(np.asarray(img, dtype=np.float32).ravel() / 255)
        ok.append(True)
    F = np.stack(rows) if rows else np.zeros((0, 3 * side * side), np.float32)
    F -= F.mean(axis=0) if rows else 0
    _, _, vt = np.linalg.svd(F, full_matrices=False)
    return F @ vt[:PIXEL_DIMS].T, np.asarray(ok, dtype=bool)


def first_rows(init, images, remaining, n, random_state, labelled=None):
    """The pool rows of a first batch picked without a model (``init`` in
    :data:`~skpeal.labeling.config.MODEL_FREE_INIT`): ``n`` of ``remaining``.

    The one pick of it, for :meth:`~skpeal.labeling.ActiveLearningLoop.query` (``skpeal
    run`` and the session) and :func:`start_project_without_model` (a new ``skpeal
    label`` project): the same rows for the same pool, ``remaining`` and seed.

    * ``"random"``: drawn at random;
    * ``"pixels"``: TypiClust (:func:`skpeal._typical.typiclust_select`) on the pixel
      features (:func:`pixel_features`) of a random sample of up to :data:`PIXEL_SAMPLE`
      of ``remaining`` (files: up to :data:`PIXEL_BYTES` of them, at least ``4 * n``):
      typical images of ``n`` clusters of the images' looks, none of them a cluster of a
      ``labelled`` row. Drawn at random when fewer than ``n`` images of the sample can
      be read.

    Parameters
    ----------
    init : {"random", "pixels"}
    images : sequence of path-like or array-like
        The pool (read only with ``"pixels"``, only the sampled rows).
    remaining : array-like of int
        Pool rows not answered yet.
    n : int
        Rows to pick, at most ``len(remaining)``.
    random_state : int
        The session's (or run's) seed.
    labelled : array-like of int, optional
        Pool rows labelled already (a batch picked while a restarted or new session's
        model loads): with ``"pixels"`` they are clustered too, as TypiClust's labelled
        rows, so the batch covers looks they do not (a random sample of them, within the
        same limits as the pool's sample).

    Returns
    -------
    rows : ndarray of int
        Sorted.
    """
    rng = np.random.default_rng(derive_seed("init", random_state))
    remaining = np.asarray(remaining, dtype=np.intp)
    if init == "pixels":
        if images is None:
            raise ValueError("init='pixels' needs the pool's images to pick the first batch")
        sample = rng.choice(remaining, size=min(PIXEL_SAMPLE, remaining.size), replace=False)
        sample = sample[:_within_budget([images[r] for r in sample], 4 * n)]
        known = np.asarray([] if labelled is None else labelled, dtype=np.intp)
        if known.size:  # as many, and as few bytes, as the sample at most
            known = rng.permutation(known)[:PIXEL_SAMPLE]
            known = known[:_within_budget([images[r] for r in known], 0)]
        feats, ok = pixel_features([images[r] for r in np.concatenate([sample, known])])
        ok, n_ok = ok[:sample.size], int(ok[:sample.size].sum())
        if n_ok >= n:
            # scikit-learn (a second and a half to import) after the reading, not beside it
            # in a thread: the import holds the interpreter's lock, and 1,000 tiles plus
            # the import took 1.47-1.67 s one after the other, 1.69-2.08 s side by side
            from .._typical import typiclust_select

            # the readable labelled rows come after the sample's: never picked
            idx, _ = typiclust_select(feats, np.arange(n_ok, len(feats)), n,
                                      random_state=derive_seed("pixels", random_state))
            return np.sort(sample[ok][idx])
        rng = np.random.default_rng(derive_seed("init", random_state))
    return np.sort(rng.choice(remaining, size=n, replace=False))


_NEW_PREFIX = ".new-project-"  # the temporary folder of a project being made


def start_project_without_model(project, images, classes, settings=None) -> int:
    """Make a new project whose first batch is picked before any model.

    Lists ``images``, stores the classes, the settings (``init`` ``"random"``, the
    default, or ``"pixels"``) and the images, and stores the first batch as pending (no
    suggestion: there is no model yet), picked from every image as :func:`first_rows`
    picks it. The project is then opened like a restarted one: ``skpeal label --init
    random`` (or ``pixels``) shows this batch while torch and the model load
    (:class:`~skpeal.labeling._starting.StartingSession`). Neither torch nor, with
    ``"random"``, scikit-learn is imported.

    The label store is written in a temporary folder inside ``project`` and linked into
    place whole, so a kill at any moment leaves either no project or a complete one, and
    a project another process made meanwhile is never replaced.

    Parameters
    ----------
    project : str or path-like
        The project folder (without ``labels.sqlite``).
    images : str or path-like
        The folder of images (searched recursively, as by :func:`collect_images`).
    classes : list of str
        The class names.
    settings : dict, optional
        :class:`~skpeal.labeling.config.ProjectSettings` fields given (None: the default).

    Returns
    -------
    n_images : int
        The number of images of the project.

    Raises
    ------
    ValueError
        ``project`` is a project already (or became one meanwhile), bad class names or
        settings, or no image.
    """
    project = Path(project)
    db = project / "labels.sqlite"
    if db.exists():
        raise ValueError(f"{os.fspath(project)} is a project already")
    if classes is None:
        raise ValueError(NEW_PROJECT_CLASSES)
    classes = check_classes(classes)
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    init = given.setdefault("init", "random")
    if init not in MODEL_FREE_INIT:
        raise ValueError(f"start_project_without_model: init must be one of "
                         f"{', '.join(map(repr, MODEL_FREE_INIT))}, got {init!r}")
    settings = resolve_settings(project, {}, given)
    check_int("batch_size", settings["batch_size"], low=1)
    check_int("random_state", settings["random_state"])
    paths = collect_images(images, exclude=project)
    project.mkdir(parents=True, exist_ok=True)
    for stale in project.glob(_NEW_PREFIX + "*"):  # of a start killed half-way (an hour
        if time.time() - stale.stat().st_mtime > 3600:  # old: not one being made now)
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=_NEW_PREFIX, dir=project))
    try:
        store = LabelStore(tmp)
        try:
            store.set_meta("classes", classes)
            store.set_meta("settings", settings)
            store.add_images(paths)
            ids, pool = zip(*store.images())
            rows = first_rows(init, pool, np.arange(len(ids)),
                              min(settings["batch_size"], len(ids)), settings["random_state"])
            store.set_pending([(ids[r], None, None) for r in rows], 0)
        finally:
            store.close()  # the last connection: SQLite folds its WAL into the file
        try:  # a link, not a rename: a project another process made meanwhile is kept
            os.link(tmp / "labels.sqlite", db)
        except FileExistsError:
            raise ValueError(f"{os.fspath(project)} is a project already (made by another "
                             "process meanwhile)") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(paths)
