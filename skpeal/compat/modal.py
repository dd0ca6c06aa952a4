"""Scoped compatibility layer between modAL-python 0.4.2.1 and scikit-learn >= 1.8.

The problem
-----------
modAL 0.4.2.1 (its last release) validates data in ``ActiveLearner.fit``, ``teach`` and
``__init__`` (through ``_add_training_data``) with::

    check_X_y(X, y, ..., force_all_finite=self.force_all_finite)

scikit-learn 1.6 renamed ``force_all_finite`` to ``ensure_all_finite`` and 1.8 removed the
old name, so every ``ActiveLearner`` with training data raises ``TypeError`` there.

What this module does
---------------------
It replaces the name ``check_X_y`` **inside** ``modAL.models.learners`` (the only modAL
module that calls it) with a thin wrapper that renames ``force_all_finite=`` to
``ensure_all_finite=`` and calls scikit-learn's own ``check_X_y``. Nothing in scikit-learn
is modified; every other caller of ``check_X_y`` is unaffected.

Image inputs need nothing more: modAL's call uses ``ensure_2d=False, allow_nd=True,
dtype=None``, so image arrays ``(n, H, W, C)``, torch tensors ``(n, C, H, W)``, lists of
equal-size PIL images and lists of paths pass it (the tests check each). Ragged lists (PIL
images of different sizes) do not work with modAL itself (its ``data_vstack`` and
``retrieve_rows`` turn lists into arrays): pass paths instead.

When it is applied
------------------
``import skpeal.strategies`` (what a modAL loop with skpeal's query strategies does) calls
:func:`enable`; ``import skpeal`` alone changes nothing. :func:`enable` may also be called
explicitly, e.g. to use modAL with other estimators. When modAL is installed, enabling
imports ``modAL.models.learners`` (a few milliseconds: modAL needs nothing that skpeal's
strategies have not imported already) and patches it, so the order of the user's imports
does not matter; no import hook is installed, and when modAL is not installed nothing
happens. The patch is applied only when the installed scikit-learn rejects
``force_all_finite``; with an older scikit-learn nothing changes. Applying twice is a
no-op.

How to undo it
--------------
* call :func:`disable` (restores modAL's original ``check_X_y``), or
* set the environment variable ``SKPEAL_MODAL_COMPAT=0`` before importing
  ``skpeal.strategies``.

Notes
-----
modAL also pins ``skorch==0.9.0``, which only ``modAL.dropout`` imports; skorch 0.9.0
imports ``pkg_resources`` (absent from setuptools >= 81), so ``modAL.dropout`` may fail to
import. ``modAL.models``, ``modAL.uncertainty``, ``modAL.disagreement`` and
``modAL.batch`` do not import skorch and are unaffected.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys

__all__ = ["ENV_VAR", "disable", "enable", "enable_from_env", "is_active"]

#: Environment variable: ``0`` / ``false`` / ``no`` / ``off`` stop ``import skpeal.strategies``
#: from applying the patch.
ENV_VAR = "SKPEAL_MODAL_COMPAT"

_TARGET = "modAL.models.learners"
_state = {"enabled": False}


def _sklearn_rejects_force_all_finite(check_X_y):
    try:
        params = inspect.signature(check_X_y).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins only
        return False
    return "force_all_finite" not in params and "ensure_all_finite" in params


def _make_wrapper(original):
    def check_X_y(X, y, *args, **kwargs):
        if "force_all_finite" in kwargs:
            value = kwargs.pop("force_all_finite")
            kwargs.setdefault("ensure_all_finite", value)
        return original(X, y, *args, **kwargs)

    check_X_y.__doc__ = (
        "scikit-learn's check_X_y accepting modAL's ``force_all_finite`` keyword "
        "(installed by skpeal.compat.modal; undo with skpeal.compat.modal.disable())."
    )
    check_X_y.__wrapped__ = original
    check_X_y._skpeal_modal_compat = True
    return check_X_y


def _patch(module):
    """Patch ``module`` (``modAL.models.learners``); return whether the wrapper is in place."""
    current = getattr(module, "check_X_y", None)
    if current is None:
        return False
    if getattr(current, "_skpeal_modal_compat", False):
        return True
    if not _sklearn_rejects_force_all_finite(current):
        return False
    module.check_X_y = _make_wrapper(current)
    return True


def enable():
    """Apply the modAL compatibility patch (importing modAL's learners when installed).

    Idempotent. Does nothing to modAL when the installed scikit-learn still accepts
    ``force_all_finite``, and nothing at all when modAL is not installed.

    Returns
    -------
    active : bool
        Whether the patch is in place now.
    """
    _state["enabled"] = True
    module = sys.modules.get(_TARGET)
    if module is None:
        if importlib.util.find_spec("modAL") is None:  # not installed: nothing to patch
            return False
        try:
            module = importlib.import_module(_TARGET)
        except ImportError:  # a broken modAL install: leave it alone
            return False
    return _patch(module)


def disable():
    """Undo :func:`enable`: restore modAL's ``check_X_y``.

    Returns
    -------
    was_active : bool
        Whether a patch was in place and has been removed.
    """
    _state["enabled"] = False
    module = sys.modules.get(_TARGET)
    current = getattr(module, "check_X_y", None)
    if getattr(current, "_skpeal_modal_compat", False):
        module.check_X_y = current.__wrapped__
        return True
    return False


def is_active():
    """Whether modAL's ``check_X_y`` is currently the compatibility wrapper.

    Returns
    -------
    active : bool
        ``True`` when ``modAL.models.learners`` is imported and patched.
    """
    module = sys.modules.get(_TARGET)
    return bool(getattr(getattr(module, "check_X_y", None), "_skpeal_modal_compat", False))


def enable_from_env():
    """Enable unless ``SKPEAL_MODAL_COMPAT`` says no (called by ``import skpeal.strategies``).

    Returns
    -------
    active : bool
        What :func:`enable` returned, or False when the environment variable says no.
    """
    if os.environ.get(ENV_VAR, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    return enable()
