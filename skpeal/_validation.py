"""The one place where skpeal checks arguments: scalars, choices, probabilities, seeds.

Every public function validates its arguments through these helpers, so a bad value gets
the same kind of message wherever it is passed: the parameter's name, what it must be,
and the value given. Errors are :class:`InvalidParameterError`, which is both a
``ValueError`` and a ``TypeError`` (as scikit-learn's own ``InvalidParameterError``), so
callers may catch either.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

__all__ = [
    "InvalidParameterError",
    "as_generator",
    "check_bool",
    "check_choice",
    "check_int",
    "check_label_values",
    "check_n_instances",
    "check_proba",
    "check_real",
    "derive_seed",
    "label_columns",
    "seed_from",
]

#: Absolute tolerance on the row sums (and range) of probability arrays: float32 softmax
#: outputs sum to 1 within about 1e-6; this leaves room for many classes.
PROBA_ATOL = 1e-4


class InvalidParameterError(ValueError, TypeError):
    """A parameter has a wrong type or value (a ``ValueError`` and a ``TypeError``)."""


# ------------------------------------------------------------------------------ scalars
def check_choice(name, value, options):
    """``value`` if it is one of ``options``, else raise naming ``name``."""
    if value not in options:
        raise InvalidParameterError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def check_bool(name, value) -> bool:
    """``value`` as a bool if it is a Python or numpy bool, else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(name, value, low=None, high=None, *, extra="") -> int:
    """``value`` as an int if it is an integer in ``[low, high]`` (None: unbounded)."""
    ok = _is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if low is not None and high is not None:
            bound = f" in [{low}, {high}]"
        elif low is not None:
            bound = f" >= {low}"
        elif high is not None:
            bound = f" <= {high}"
        else:
            bound = ""
        raise InvalidParameterError(f"{name} must be {extra}an integer{bound}, got {value!r}")
    return int(value)


def check_real(name, value, low=-np.inf, high=np.inf, *, closed="both") -> float:
    """``value`` as a float if it is a finite real number in the interval.

    ``closed`` is ``"both"``, ``"left"``, ``"right"`` or ``"neither"``: which ends of
    ``[low, high]`` belong to it.
    """
    left = closed in ("both", "left")
    right = closed in ("both", "right")
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    ok = ok and bool(np.isfinite(value))
    if ok:
        ok = (value >= low if left else value > low) and (value <= high if right else value < high)
    if not ok:
        raise InvalidParameterError(
            f"{name} must be a number in {'[' if left else '('}{low:g}, {high:g}"
            f"{']' if right else ')'}, got {value!r}"
        )
    return float(value)


def check_n_instances(n_instances, n_pool: int) -> int:
    """The number of rows to query from a pool of ``n_pool`` (1 to ``n_pool``)."""
    if n_pool == 0:
        raise InvalidParameterError("X_pool is empty: there is nothing to query")
    if not _is_int(n_instances):
        raise InvalidParameterError(f"n_instances must be an integer, got {n_instances!r}")
    if not 1 <= n_instances <= n_pool:
        raise InvalidParameterError(
            f"n_instances must be in [1, {n_pool}] (the pool size), got {n_instances}"
        )
    return int(n_instances)


# ------------------------------------------------------------------------ probabilities
def _first_bad(arr):
    idx = np.argwhere(~np.isfinite(arr))[0]
    return int(idx[0]) if idx.size == 1 else tuple(int(i) for i in idx)


def check_proba(proba, *, name="proba", min_samples=0):
    """Validate a probability array and return it as float64.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Rows of class probabilities.
    name : str, default="proba"
        Name used in error messages.
    min_samples : int, default=0
        Fewest rows accepted.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes), dtype float64
        The validated array, tiny negative round-off clipped to 0 (rows of a
        low-precision input, e.g. float16, renormalised to sum to 1).

    Raises
    ------
    ValueError
        If the array is not 2-D, has too few rows or no column, is not numeric, contains
        NaN or infinity, has entries outside [0, 1] or rows that do not sum to 1
        (absolute tolerance 1e-4, or the input dtype's rounding times the number of
        classes when larger, e.g. for float16).
    """
    p = np.asarray(proba)
    # the row-sum tolerance grows with the input's rounding (float16: ~1e-3 per entry)
    tol = PROBA_ATOL
    if p.dtype.kind == "f" and p.ndim == 2:
        tol = max(tol, float(np.finfo(p.dtype).eps) * max(p.shape[1], 1))
    if p.ndim != 2:
        raise InvalidParameterError(
            f"{name} must be a 2-D array of shape (n_samples, n_classes), got shape {p.shape}"
        )
    if p.shape[0] < min_samples:
        raise InvalidParameterError(
            f"{name} must have at least {'one row' if min_samples == 1 else min_samples} "
            f"(sample), got {p.shape[0]}"
        )
    if p.shape[1] < 1:
        raise InvalidParameterError(
            f"{name} must have at least one column (class), got shape {p.shape}"
        )
    try:
        p = p.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be numeric, got dtype {p.dtype}") from None
    if not np.all(np.isfinite(p)):
        raise InvalidParameterError(
            f"{name} must be finite: it contains NaN or infinity (at {_first_bad(p)})"
        )
    if p.size and (p.min() < -PROBA_ATOL or p.max() > 1 + PROBA_ATOL):
        raise InvalidParameterError(
            f"{name} must lie in [0, 1], got values in [{p.min():.6g}, {p.max():.6g}]"
        )
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if bad.size:
        raise InvalidParameterError(
            f"{name} rows must sum to 1 (within {tol:.3g}); row {bad[0]} sums to "
            f"{sums[bad[0]]:.6g} ({bad.size} bad row(s))"
        )
    p = np.clip(p, 0.0, 1.0)
    if tol > PROBA_ATOL:  # low-precision rows: renormalised, so later checks pass in float64
        p = p / p.sum(axis=1, keepdims=True)
    return p


def label_columns(y, classes, *, name="y", classes_name="classes") -> np.ndarray:
    """Column index of each label of ``y`` in ``classes``; unknown labels raise.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    classes : ndarray of shape (n_classes,)
        Distinct labels, the column order.
    name, classes_name : str
        Names used in the error message.

    Returns
    -------
    columns : ndarray of shape (n_samples,), dtype intp
    """
    classes = np.asarray(classes)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    if len(lookup) != classes.shape[0]:
        raise InvalidParameterError(
            f"{classes_name} must not contain duplicates, got {classes.tolist()!r}"
        )
    labels = np.asarray(y).tolist()
    unknown = sorted({repr(v) for v in labels if v not in lookup})
    if unknown:
        raise InvalidParameterError(
            f"{name} contains labels not in {classes_name}: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; {classes_name}={classes.tolist()!r}"
        )
    return np.fromiter((lookup[v] for v in labels), dtype=np.intp, count=len(labels))


# ------------------------------------------------------------------------------ seeds
def as_generator(random_state) -> np.random.Generator:
    """A numpy Generator from None, an int, a SeedSequence or a Generator."""
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "random_state must be None, an int, a SeedSequence or a numpy Generator, "
            f"got {random_state!r}"
        ) from exc


def seed_from(random_state) -> int:
    """An int seed from ``random_state`` without touching any global random state.

    None draws fresh entropy; an int is used as is (modulo 2**63); a numpy Generator or
    RandomState gives one draw.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if _is_int(random_state):
        return int(random_state) % (2**63)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    raise InvalidParameterError(
        f"random_state must be None, an int or a numpy generator, got {random_state!r}"
    )


def derive_seed(*parts) -> int:
    """A 32-bit seed derived from ``parts`` through :class:`numpy.random.SeedSequence`.

    Stable across processes and platforms (unlike ``hash``): each part is hashed by its
    ``str``, so ``derive_seed("fit", 0, 3)`` is the same everywhere.
    """
    words = [int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:4], "little") for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def check_label_values(values, name: str) -> None:
    """Refuse None and a mix of strings and numbers among labels (numpy would silently turn
    ``["a", 1]`` into ``["a", "1"]``, and ``predict`` would then answer ``"1"``)."""
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        return  # a numeric or text array holds one kind already
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        return  # not a list of labels: reported by the checks that follow
    kinds = set()
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            raise ValueError(f"{name}[{i}] is {v!r}: every label must be a class; drop "
                             "unlabelled samples before fit")
        if isinstance(v, (str, bytes, np.str_, np.bytes_)):
            kinds.add("strings")
        elif isinstance(v, (bool, np.bool_)):
            kinds.add("booleans")
        elif isinstance(v, (numbers.Number, np.number)):
            kinds.add("numbers")
        if len(kinds) > 1:
            raise ValueError(f"{name} mixes {' and '.join(sorted(kinds))} (e.g. {name}[{i}]="
                             f"{v!r}); numpy would turn them all into text: give labels of "
                             "one type")
