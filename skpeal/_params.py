"""The checks behind :class:`skpeal.CLIPAdapterClassifier`: its parameters and its files.

:data:`PARAM_CHECKS` is the estimator's constraints table (one check per parameter, run
at ``fit``, as scikit-learn's ``_parameter_constraints``); :func:`check_adapter_file`
validates a file read by ``load_adapter``. Kept apart so that ``estimator.py`` holds the
scikit-learn contract and nothing else.
"""

from __future__ import annotations

from functools import partial

import torch

from ._runtime import resolve_device
from ._spec import STRUCTURAL
from ._validation import (
    InvalidParameterError,
    check_bool,
    check_choice,
    check_int,
    check_real,
)
from .adapters import LORA_TOWERS, adapter_names, check_adapter_params
from .adapters.prompt import CLASS_TOKEN_POSITIONS
from .losses import CALIBRATION_MODES

_DEFAULT_TEMPLATES = ("a photo of a {}.",)


def check_adapter_file(meta, tensors, path: str) -> None:
    """Validate the metadata and tensors of an adapter file; errors name the field."""

    def bad(msg):
        return ValueError(f"adapter file {path!r}: {msg}")

    if not isinstance(meta, dict):
        raise bad(f"the 'skpeal' metadata must be a JSON object, got {type(meta).__name__}")
    for key, kind in (("params", dict), ("classes", list), ("classnames", list),
                      ("zero_shot", bool)):
        if key not in meta:
            raise bad(f"the metadata has no {key!r} field")
        if not isinstance(meta[key], kind):
            raise bad(f"metadata field {key!r} must be a {kind.__name__}, got "
                      f"{meta[key]!r:.60}")
    params = meta["params"]
    for key, value in _ADDED_SINCE.items():  # files written before the key existed
        params.setdefault(key, value)
    missing = [k for k in STRUCTURAL if k not in params]
    unknown = [k for k in params if k not in STRUCTURAL]
    if missing or unknown:
        raise bad(f"metadata field 'params' lacks {missing} / has unknown keys {unknown}")
    classes, names = meta["classes"], meta["classnames"]
    if len(classes) < 2:
        raise bad(f"metadata field 'classes' must list at least two classes, got {classes!r}")
    kinds = {type(c) for c in classes}
    if not (kinds <= {str} or kinds <= {int} or kinds <= {bool}):
        raise bad("metadata field 'classes' must hold only strings, only integers or only "
                  "booleans")
    if len(set(classes)) != len(classes):
        raise bad("metadata field 'classes' has duplicate labels")
    if classes != sorted(classes):
        raise bad("metadata field 'classes' must be sorted (the column order of predict_proba)")
    if len(names) != len(classes) or not all(isinstance(n, str) for n in names):
        raise bad(f"metadata field 'classnames' must hold {len(classes)} strings, one per "
                  f"entry of 'classes', got {names!r:.80}")
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise bad(f"tensor {name!r} has dtype {t.dtype}, not a floating-point dtype")
        if not bool(torch.isfinite(t).all()):
            raise bad(f"tensor {name!r} holds non-finite values (NaN or infinity)")


#: Structural keys added after adapter files were first written, with the value that
#: files without them mean.
_ADDED_SINCE = {"adapter_params": {}}


def check_params(params: dict) -> dict:
    """The estimator's params (``get_params()`` names) checked against
    :data:`PARAM_CHECKS`, values normalised; ``adapter_params`` checked by the kind's parts
    (its options, defaults filled in)."""
    out = {name: PARAM_CHECKS.get(name, unchecked)(name, v) for name, v in params.items()}
    out["adapter_params"] = check_adapter_params(out["adapter"], params.get("adapter_params"))
    return out


# ------------------------------------------------------------------ parameter constraints
def unchecked(name, value):
    """No check: the value as given."""
    return value


def _templates(name, value):
    templates = _DEFAULT_TEMPLATES if value is None else value
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates or any(not isinstance(t, str) or t.count("{}") != 1 for t in templates):
        raise InvalidParameterError(
            f"templates must be a non-empty list of strings with exactly one '{{}}', "
            f"got {value!r}"
        )
    return tuple(templates)


def _ctx_init(name, value):
    if value is not None and not (isinstance(value, str) and value.strip()):
        raise InvalidParameterError(f"ctx_init must be None or non-empty words, got {value!r}")
    return value


def _predict_batch_size(name, value):
    if isinstance(value, str) and value == "auto":
        return value
    return check_int(name, value, 1, extra="'auto' or ")


def _optional(check):
    def f(name, value):
        return None if value is None else check(name, value)

    return f


def _warmup_fraction(name, value):
    return check_real(name, 0.0 if value is None else value, 0.0, 1.0, closed="left")


def _area_range(name, value):
    try:
        low, high = value
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"{name} must be a pair (low, high) of area fractions, got {value!r}") from None
    low = check_real(name, low, 0.0, 1.0, closed="right")
    high = check_real(name, high, 0.0, 1.0, closed="right")
    if low > high:
        raise InvalidParameterError(f"{name} must have low <= high, got {value!r}")
    return (low, high)


def _device(name, value):
    return resolve_device(value)


#: How each parameter of :class:`CLIPAdapterClassifier` is checked (and normalised) at
#: fit; parameters not listed (``model``, ``pretrained``, ``classes``, ``classnames``,
#: ``lora_targets``, ``random_state``) are checked where they are used.
PARAM_CHECKS = {
    # the registered kinds, read at check time (skpeal.adapters)
    "adapter": lambda name, value: check_choice(name, value, adapter_names()),
    "class_token_position": partial(check_choice, options=CLASS_TOKEN_POSITIONS),
    "calibration": partial(check_choice, options=(None, *CALIBRATION_MODES)),
    "optimizer": partial(check_choice, options=("sgd", "adamw")),
    "precision": partial(check_choice, options=("auto", "fp32", "bf16", "fp16")),
    "lora_towers": partial(check_choice, options=LORA_TOWERS),
    "n_ctx": partial(check_int, low=1),
    "lora_r": partial(check_int, low=1),
    "max_epochs": partial(check_int, low=0),
    "batch_size": partial(check_int, low=1),
    "warmup_epochs": partial(check_int, low=0),
    "verbose": partial(check_int, low=0),
    "augment_views": partial(check_int, low=1),
    "augment_scale": _area_range,
    "num_workers": _optional(partial(check_int, low=0)),
    "predict_batch_size": _predict_batch_size,
    "feature_cache": check_bool,
    "warm_start": check_bool,
    "augment": check_bool,
    "class_specific": check_bool,
    "lr": partial(check_real, low=0.0, closed="right"),
    "weight_decay": partial(check_real, low=0.0),
    "lora_alpha": partial(check_real, low=0.0, closed="right"),
    "lora_dropout": partial(check_real, low=0.0, high=1.0, closed="left"),
    "calibration_weight": partial(check_real, low=0.0),
    "calibration_beta": partial(check_real, low=0.0, high=1.0, closed="left"),
    "calibration_warmup": _warmup_fraction,
    "ctx_init": _ctx_init,
    "templates": _templates,
    "device": _device,
}
