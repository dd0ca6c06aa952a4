"""Parameter checks of :class:`~skpeal.labeling.LabelingSession` (kept apart from it)."""

from __future__ import annotations

import getpass
import math
from pathlib import Path

__all__ = ["NEW_PROJECT_CLASSES", "check_classes", "check_out_parent", "check_session_params",
           "default_annotator"]

#: The error of a new project opened without class names.
NEW_PROJECT_CLASSES = "classes: a new project needs its class names"


def check_session_params(estimator, lease_seconds) -> None:
    """The estimator must be a probabilistic classifier; leases must last a while."""
    # scikit-learn takes a second to import: not at the top, as the web app imports this
    # module and a new ``skpeal label`` serves its page before the model is loaded
    from sklearn.base import is_classifier

    if estimator is not None and not (is_classifier(estimator)
                                      and hasattr(estimator, "predict_proba")):
        raise ValueError(f"estimator must be a classifier with predict_proba (e.g. "
                         f"CLIPAdapterClassifier(...)), got {type(estimator).__name__}")
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)) \
            or not math.isfinite(lease_seconds) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be a positive number of seconds (how long a "
                         f"tab keeps its batch), got {lease_seconds!r}")


def default_annotator(annotator=None) -> str:
    """The name stored with a session's answers: ``annotator``, else the login name."""
    if annotator is not None:
        return annotator
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"


def check_out_parent(path, what) -> Path:
    """``path`` whose parent folder exists (a typo in a path must not create folders)."""
    path = Path(path)
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"{what}: the folder {parent} does not exist; create it first or "
                         "give another path")
    return path


def check_classes(classes) -> list[str]:
    """``classes`` as a list of at least two distinct, non-empty class names."""
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
