"""Image datasets that load in one call: Fashion-MNIST, scikit-learn's digits, image folders.

Every loader returns a :class:`sklearn.utils.Bunch` with the same fields:

``X_train``, ``X_test``
    The images: ``uint8`` arrays of shape ``(n, H, W)`` for the grey datasets, or
    ``object`` arrays of file paths (``str``) for :func:`load_image_folder`. Both can be
    indexed with integer arrays (as active-learning pools are) and passed to ``fit``.
``y_train``, ``y_test``
    Integer class ids (``int64``, ``0 .. n_classes - 1``).
``classnames``
    ``list`` of ``str``: ``classnames[k]`` is the text of class id ``k``, the words a
    CLIP-style model's prompts are built from. ``np.asarray(classnames)[y]`` gives the
    labels as names.
``DESCR``
    A one-paragraph description.

Nothing here imports torch; the loaders need numpy, scikit-learn and (for the folder
loader) Pillow.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state

from . import _files
from ._validation import check_int, check_real

__all__ = [
    "FASHION_MNIST_CLASSNAMES",
    "IMAGE_EXTENSIONS",
    "load_digits_images",
    "load_fashion_mnist",
    "load_image_folder",
]

#: Official Fashion-MNIST class names, in label order.
FASHION_MNIST_CLASSNAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


#: File extensions (lower case) that :func:`load_image_folder` treats as images (the
#: labelling session's folder listing reads the same table).
IMAGE_EXTENSIONS = _files.IMAGE_EXTENSIONS

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_FMNIST_PACKAGE = "dataset-fashion-mnist"
_FMNIST_FILES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# Where the Debian package installs its files; tried after asking dpkg.
_FMNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


# -- Fashion-MNIST ---------------------------------------------------------------------


def load_fashion_mnist(*, n_train=None, n_test=None, random_state=0, data_home=None) -> Bunch:
    """Fashion-MNIST (Zalando; 60,000 train / 10,000 test grey 28x28 images, 10 classes).

    The files come from the Debian package ``dataset-fashion-mnist`` (install it with
    ``apt-get install dataset-fashion-mnist``), found through the package's file list, or
    from ``data_home``.

    Parameters
    ----------
    n_train, n_test : int or None, default=None
        Number of training / test images to keep; None keeps the whole split. The subset
        is drawn without replacement, stratified by class (so ``n_train=100`` gives 10
        images per class), and kept in the files' order.
    random_state : int, RandomState instance or None, default=0
        Seed of the subsampling (unused without ``n_train``/``n_test``).
    data_home : str, path-like or None, default=None
        A folder holding the four idx files (``train-images-idx3-ubyte[.gz]``, ...);
        None looks for the Debian package's files.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train`` ``uint8 (n_train, 28, 28)``, ``y_train`` ``int64``, ``X_test``,
        ``y_test``, ``classnames`` (:data:`FASHION_MNIST_CLASSNAMES` as a list), ``DESCR``.
        Images are as in the files: light garment on a black background.

    Raises
    ------
    FileNotFoundError
        If the files are not found; the message names the Debian package and the
        command that installs it.
    ValueError
        If ``n_train``/``n_test`` is not a positive integer no larger than the split, or a
        file is not a valid idx file.

    Examples
    --------
    >>> from skpeal.datasets import load_fashion_mnist
    >>> data = load_fashion_mnist(n_train=100, n_test=50)  # doctest: +SKIP
    >>> data.X_train.shape, data.classnames[data.y_train[0]]  # doctest: +SKIP
    ((100, 28, 28), 'Ankle boot')
    """
    files = _locate_fashion_mnist(data_home)
    rng = check_random_state(random_state)
    X_train, y_train = _read_idx_images(files["X_train"]), _read_idx_labels(files["y_train"])
    X_test, y_test = _read_idx_images(files["X_test"]), _read_idx_labels(files["y_test"])
    for X, y, split in ((X_train, y_train, "train"), (X_test, y_test, "test")):
        if len(X) != len(y):
            raise ValueError(f"Fashion-MNIST {split} split: {len(X)} images but {len(y)} labels")
        if y.size and y.max() >= len(FASHION_MNIST_CLASSNAMES):
            raise ValueError(f"Fashion-MNIST {split} labels go up to {y.max()}, expected < 10")
    keep = _subsample(y_train, n_train, rng, "n_train")
    X_train, y_train = X_train[keep], y_train[keep]
    keep = _subsample(y_test, n_test, rng, "n_test")
    X_test, y_test = X_test[keep], y_test[keep]
    return Bunch(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        classnames=list(FASHION_MNIST_CLASSNAMES),
        DESCR=(
            "Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT licence): grey 28x28 "
            "images of Zalando articles, 10 balanced classes, from the files of the Debian "
            f"package {_FMNIST_PACKAGE} ({Path(files['X_train']).parent})."
        ),
    )


def _locate_fashion_mnist(data_home) -> dict[str, Path]:
    if data_home is not None:
        if not isinstance(data_home, (str, os.PathLike)):
            raise TypeError(f"data_home must be a folder path or None, got {data_home!r}")
        found = _fmnist_files_in(Path(data_home))
        if found is None:
            raise FileNotFoundError(
                f"data_home={os.fspath(data_home)!r} does not hold the four Fashion-MNIST idx "
                f"files ({', '.join(_FMNIST_FILES.values())}, optionally .gz)"
            )
        return found
    for folder in _package_folders():
        found = _fmnist_files_in(folder)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"Fashion-MNIST was not found: install the Debian package {_FMNIST_PACKAGE} "
        f"(sudo apt-get update && sudo apt-get install -y {_FMNIST_PACKAGE}), or pass "
        "data_home=<folder with train-images-idx3-ubyte.gz and the three other idx files>"
    )


def _package_folders() -> list[Path]:
    """Folders that hold the Debian package's idx files, from its file list."""
    listing = ""
    if shutil.which("dpkg-query"):
        try:
            listing = subprocess.run(
                ["dpkg-query", "-L", _FMNIST_PACKAGE],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
    if not listing:
        info = Path("/var/lib/dpkg/info") / f"{_FMNIST_PACKAGE}.list"
        try:
            listing = info.read_text()
        except OSError:
            listing = ""
    folders = []
    for line in listing.splitlines():
        path = Path(line.strip())
        if path.name.startswith(_FMNIST_FILES["X_train"]):
            folders.append(path.parent)
    folders.append(Path(_FMNIST_DEFAULT_DIR))
    return list(dict.fromkeys(folders))


def _fmnist_files_in(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in _FMNIST_FILES.items():
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            return None
    return found


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"{path} is not an idx file of {ndim}-d unsigned bytes")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise ValueError(
            f"{path} is truncated: header says {shape}, data has {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _read_idx_images(path: Path) -> np.ndarray:
    return _read_idx(path, 2051, 3)


def _read_idx_labels(path: Path) -> np.ndarray:
    return _read_idx(path, 2049, 1).astype(np.int64)


def _subsample(y: np.ndarray, n, rng: np.random.RandomState, name: str) -> np.ndarray:
    """Sorted indices of a stratified sample of ``n`` entries of ``y`` (all when None)."""
    if n is None:
        return np.arange(len(y))
    n = check_int(name, n, 1, len(y), extra="None or ")
    classes, y_idx = np.unique(y, return_inverse=True)
    counts = np.bincount(y_idx)
    # largest-remainder allocation of n over the classes, ties broken at random
    quota = counts * (n / len(y))
    take = np.floor(quota).astype(int)
    rest = n - take.sum()
    if rest:
        order = np.lexsort((rng.random_sample(len(classes)), -(quota - take)))
        take[order[:rest]] += 1
    keep = [
        rng.choice(np.flatnonzero(y_idx == k), size=t, replace=False) for k, t in enumerate(take)
    ]
    return np.sort(np.concatenate(keep))


# -- digits ----------------------------------------------------------------------------


def load_digits_images(*, test_size=0.25, random_state=0) -> Bunch:
    """The handwritten digits of scikit-learn (1,797 grey 8x8 images, 10 classes) as images.

    Parameters
    ----------
    test_size : float, default=0.25
        Fraction of each class put in the test split (the digits come without one).
    random_state : int, RandomState instance or None, default=0
        Seed of the split.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train`` ``uint8 (n_train, 8, 8)`` (the 0-16 grey levels scaled to 0-255:
        bright strokes on a black background), ``y_train`` ``int64`` digit values,
        ``X_test``, ``y_test``, ``classnames`` (``["zero", "one", ..., "nine"]``: class
        id ``k`` is the digit ``k``), ``DESCR``.

    Raises
    ------
    ValueError
        If ``test_size`` is not in (0, 1).

    Examples
    --------
    >>> from skpeal.datasets import load_digits_images
    >>> data = load_digits_images()
    >>> data.X_train.dtype, data.X_train.shape[1:], data.classnames[3]
    (dtype('uint8'), (8, 8), 'three')
    """
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    y = digits.target.astype(np.int64)
    train, test = _stratified_split(y, test_size, check_random_state(random_state))
    return Bunch(
        X_train=images[train],
        y_train=y[train],
        X_test=images[test],
        y_test=y[test],
        classnames=list(_DIGIT_WORDS),
        DESCR=(
            "scikit-learn's optical recognition of handwritten digits (UCI): 1,797 grey 8x8 "
            "images, 10 classes; split per class with the given test_size and seed."
        ),
    )


def _check_test_size(test_size) -> float:
    return check_real("test_size", test_size, 0.0, 1.0, closed="neither")


def _stratified_split(y: np.ndarray, test_size, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-class split: round(test_size * n_k) test items, at least one train item per class."""
    test_size = _check_test_size(test_size)
    train, test = [], []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        idx = idx[rng.permutation(len(idx))]
        n_test = min(int(round(test_size * len(idx))), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# -- image folders ---------------------------------------------------------------------


def load_image_folder(
    path, *, test_size=0.25, random_state=0, check_images=True, follow_symlinks=False
) -> Bunch:
    """Image files in one sub-folder per class, as paths and labels.

    Two layouts are recognised::

        path/<class>/<images>                   split here, per class, with a seed
        path/train/<class>/<images>             the folders' own split
        path/test/<class>/<images>

    Class names are the sub-folder names, sorted; images may sit in nested folders
    inside a class folder. Files whose extension (any case) is not in
    :data:`IMAGE_EXTENSIONS` and hidden files are ignored. Folder symlinks that lead back
    into ``path`` (loops, or another class's images) are never followed, those that lead
    out of it only with ``follow_symlinks=True``; what is skipped is reported in one
    warning.

    Parameters
    ----------
    path : str or path-like
        The root folder.
    test_size : float, default=0.25
        Without ``train/``/``test/``: fraction of each class put in the test split
        (rounded; every class keeps at least one training image).
    random_state : int, RandomState instance or None, default=0
        Seed of that split.
    check_images : bool, default=True
        Open every file with Pillow and verify it, so that unreadable files are reported
        here rather than in the middle of training.
    follow_symlinks : bool, default=False
        Follow folder symlinks that lead out of ``path`` (links back into it never are).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train``, ``X_test``: ``object`` arrays of absolute file paths (``str``),
        sorted by class then path; ``y_train``, ``y_test``: ``int64`` class ids;
        ``classnames``: the class folder names, so that ``classnames[k]`` names id ``k``
        (rename the folders, e.g. ``golden_retriever`` -> ``golden retriever``, or edit
        the list, to change the prompt text); ``DESCR``.

    Raises
    ------
    ValueError
        If ``path`` is not a folder or has no class folders, a class folder holds no
        image (all such classes are named), a file cannot be read as an image (all such
        files are named), only one of ``train/`` and ``test/`` exists, ``test/`` has a
        class that ``train/`` lacks, there is a single class, or the test split is empty.

    Examples
    --------
    >>> from skpeal.datasets import load_image_folder
    >>> data = load_image_folder("photos/")  # doctest: +SKIP
    >>> clf.fit(data.X_train, data.y_train)  # doctest: +SKIP
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a folder path, got {path!r}")
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"path={os.fspath(path)!r} is not a folder")
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    skipped: list[str] = []
    if has_train != has_test:
        present, absent = ("train", "test") if has_train else ("test", "train")
        raise ValueError(
            f"{root} has a {present}/ folder but no {absent}/ folder: give both, or put "
            "the class folders directly in the root"
        )
    if has_train:
        train_files = _class_files(root / "train", root, follow_symlinks, skipped)
        test_files = _class_files(root / "test", root, follow_symlinks, skipped)
        extra = sorted(set(test_files) - set(train_files))
        if extra:
            raise ValueError(f"{root / 'test'} has classes that train/ lacks: {extra}")
        classnames = sorted(train_files)
        _check_classes(classnames, root / "train")
        _check_non_empty(
            {
                **{f"test/{c}": v for c, v in test_files.items()},
                **{f"train/{c}": v for c, v in train_files.items()},
            },
            root,
        )
        X_train, y_train = _flatten(train_files, classnames)
        X_test, y_test = _flatten(test_files, classnames)
    else:
        files = _class_files(root, root, follow_symlinks, skipped)
        _check_non_empty(files, root)
        classnames = sorted(files)
        _check_classes(classnames, root)
        X, y = _flatten(files, classnames)
        train, test = _stratified_split(y, test_size, check_random_state(random_state))
        X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
        if not len(X_test):
            raise ValueError(
                f"the test split of {root} is empty: with test_size={test_size} no class has "
                "enough images (each keeps at least one for training); add images, raise "
                "test_size, or give train/ and test/ folders"
            )
    if skipped:
        warnings.warn(
            f"load_image_folder skipped {len(skipped)} folder symlink(s): " + "; ".join(skipped),
            UserWarning,
            stacklevel=2,
        )
    if check_images:
        _check_readable(np.concatenate([X_train, X_test]))
    layout = (
        "train/ and test/ folders" if has_train else f"a per-class split (test_size={test_size})"
    )
    return Bunch(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        classnames=classnames,
        DESCR=f"Images of {len(classnames)} classes from {root}, with {layout}.",
    )


def _class_files(folder: Path, root: Path, follow_symlinks: bool,
                 skipped: list[str]) -> dict[str, list[str]]:
    """{class folder name: sorted image paths inside it (recursively)}."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder} has no class sub-folders (expected {folder}/<class>/<images>)")
    out = {}
    for cdir in classes:
        if cdir.is_symlink() and not _may_follow(cdir, root, follow_symlinks, set(), skipped):
            continue  # not a class of this folder
        out[cdir.name] = sorted(_walk_images(cdir, root, follow_symlinks, set(), skipped))
    return out


def _may_follow(link: Path | str, root: Path, follow: bool, seen: set, skipped: list) -> bool:
    """Whether to descend into a directory symlink; what is not followed goes to ``skipped``."""
    target = os.path.realpath(link)
    inside = target == str(root) or target.startswith(str(root) + os.sep)
    if inside:
        skipped.append(f"{link} -> {target} (leads back into the folder)")
        return False
    if not follow:
        skipped.append(f"{link} -> {target} (leads out of the folder; pass "
                       "follow_symlinks=True to follow it)")
        return False
    if target in seen:
        skipped.append(f"{link} -> {target} (a loop)")
        return False
    seen.add(target)
    return True


def _walk_images(top, root: Path, follow: bool, seen: set, skipped: list) -> list[str]:
    images = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                keep.append(d)
            elif _may_follow(full, root, follow, seen, skipped):
                images += _walk_images(full, root, follow, seen, skipped)
        dirnames[:] = keep
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                full = os.path.join(dirpath, name)
                if not os.path.isfile(full):  # a FIFO would block every reader forever
                    raise ValueError(
                        f"{full} has an image extension but is not a regular file (a FIFO, "
                        "socket, device or broken link); remove it or move it out of the "
                        "folder")
                images.append(full)
    return images


def _check_classes(classnames: list[str], folder: Path) -> None:
    if not classnames:
        raise ValueError(f"{folder} has no class folder that is not a symlink out of it; pass "
                         "follow_symlinks=True to follow such links")
    if len(classnames) < 2:
        raise ValueError(
            f"{folder} holds a single class {classnames[0]!r} (one class folder); a classifier "
            "needs at least two"
        )


def _check_non_empty(files: dict[str, list[str]], root: Path) -> None:
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise ValueError(
            f"class folder(s) without image files in {root}: {sorted(empty)} "
            f"(image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})"
        )


def _flatten(files: dict[str, list[str]], classnames: list[str]) -> tuple[np.ndarray, np.ndarray]:
    paths, labels = [], []
    for k, name in enumerate(classnames):
        for p in files.get(name, []):
            paths.append(p)
            labels.append(k)
    X = np.empty(len(paths), dtype=object)
    X[:] = paths
    return X, np.asarray(labels, dtype=np.int64)


def _check_readable(paths) -> None:
    bad = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as exc:  # Pillow raises many types for damaged files
            bad.append(f"{p} ({exc.__class__.__name__})")
    if bad:
        shown = "; ".join(bad[:20]) + (f"; ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise ValueError(f"{len(bad)} file(s) cannot be read as images: {shown}")
