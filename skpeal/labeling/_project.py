"""What a project folder holds before any model: its image files and its class names."""

from __future__ import annotations

import os
from pathlib import Path

from ..datasets import IMAGE_EXTENSIONS

__all__ = ["collect_images"]


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
        root = Path(source).resolve()
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if Path(name).suffix.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
                    continue
                real = (Path(dirpath) / name).resolve()
                if not real.is_file() or not real.is_relative_to(root):
                    continue
                if excl is not None and real.is_relative_to(excl):
                    continue
                out.append(os.fspath(real))
        paths = sorted(set(out))
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


def _check_classes(classes) -> list[str]:
    if isinstance(classes, str) or classes is None:
        raise ValueError(f"classes must be a list of class names, got {classes!r}")
    classes = [c for c in classes]
    if len(classes) < 2:
        raise ValueError(f"classes: give at least two class names, got {classes!r}")
    for c in classes:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"classes: every class name must be a non-empty string, got {c!r}")
        if "\x00" in c:
            raise ValueError(f"classes: {c!r} holds a NUL character")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes: a class name is listed twice in {classes!r}")
    return classes
