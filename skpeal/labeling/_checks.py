"""Parameter checks of :class:`~skpeal.labeling.LabelingSession` (kept apart from it)."""

from __future__ import annotations

import math
from pathlib import Path

from sklearn.base import is_classifier

__all__ = ["check_out_parent", "check_session_params"]


def check_session_params(estimator, lease_seconds) -> None:
    """The estimator must be a probabilistic classifier; leases must last a while."""
    if estimator is not None and not (is_classifier(estimator)
                                      and hasattr(estimator, "predict_proba")):
        raise ValueError(f"estimator must be a classifier with predict_proba (e.g. "
                         f"CLIPAdapterClassifier(...)), got {type(estimator).__name__}")
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)) \
            or not math.isfinite(lease_seconds) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be a positive number of seconds (how long a "
                         f"tab keeps its batch), got {lease_seconds!r}")


def check_out_parent(path, what) -> Path:
    """``path`` whose parent folder exists (a typo in a path must not create folders)."""
    path = Path(path)
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"{what}: the folder {parent} does not exist; create it first or "
                         "give another path")
    return path
