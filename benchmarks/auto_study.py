"""Three first-batch rules measured against ``auto`` (issue 22 item 5, issue 23 item 5).

Each rule is registered as a strategy, run through the same protocol, seeds and sets as
``benchmarks/lowbudget_eval.py`` into the same output folder (so it is paired per seed
with the strategies already there), and the report is printed with it included:

``cg0-dropquery``
    The class-guided cold start for the very first batch (no label yet), then DropQuery.
    ``auto`` (DropQuery until 10 labels per class, then margin with PCB) was 2.3 and 0.6
    AULC points behind ``classguided`` on digits and Fashion-MNIST; would a class-guided
    first batch close that gap? (The rule the issue suggests, fixed before any run.)
``random0-auto``
    A first batch drawn at random, then ``auto``. A new labelling project could show such
    a batch before torch and the model are loaded (about 5 s of imports on a 2-core CPU,
    the floor of the time to the first batch); what would that cost in labels?
``pixels0-auto``
    A first batch that needs no model either, but covers the images' looks
    (``init="pixels"``, :func:`skpeal.labeling._project.first_rows`: TypiClust on the
    pixels of a random sample of up to 1,000 images, each shrunk to 16x16 RGB, centred
    and projected on its 32 principal components); then ``auto``. Would it win back what
    a random first batch costs? (Fixed before any run.)
``pixels01-auto``
    The first two batches picked that way (the second with the first batch's images
    clustered too, as TypiClust's labelled rows), then ``auto``: what a person gets who
    answers the first batch of a new ``skpeal label`` project before the model is loaded
    (:mod:`skpeal.labeling._starting`). What do those two batches cost? (Fixed before
    any run.)

Usage::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/auto_study.py --out /tmp/lowbudget_eval
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/auto_study.py --rule random0-auto \\
        --out /tmp/lowbudget_eval

``--rule`` picks one (default: all); every other option is ``lowbudget_eval.py``'s.
Neither ``auto`` nor the labelling session is changed here: the study only reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lowbudget_eval  # noqa: E402
import numpy as np  # noqa: E402

from skpeal import _pool  # noqa: E402
from skpeal.labeling import loop as _loop  # noqa: E402
from skpeal.labeling._project import first_rows  # noqa: E402
from skpeal.strategies import random_sampling, register_strategy  # noqa: E402
from skpeal.strategies.lowbudget import (  # noqa: E402
    auto_sampling,
    classguided_sampling,
    dropquery_sampling,
)

_POOL_IMAGES = {}  # the images of the pool being run (the protocol queries row indices)


def _keep_pool_images():
    original = _loop.ActiveLearningLoop.rounds

    def rounds(self, X_pool, *args, **kwargs):
        _POOL_IMAGES["X"] = X_pool
        return original(self, X_pool, *args, **kwargs)

    _loop.ActiveLearningLoop.rounds = rounds


def pixels_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    """``init="pixels"``'s first batch (:func:`skpeal.labeling._project.first_rows`)."""
    X_pool = np.asarray(X_pool)
    rows = X_pool if X_pool.ndim == 1 else np.arange(len(X_pool))  # sorted pool rows
    images = _POOL_IMAGES["X"] if X_pool.ndim == 1 else X_pool
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    labelled = kwargs.get("X_labeled") if X_pool.ndim == 1 else None  # pool rows
    picked = first_rows("pixels", images, rows, n_instances, seed, labelled=labelled)
    return np.searchsorted(rows, picked), np.zeros(len(picked))


def _first_then(name, first, then, n_first=1):
    """A query function: ``first`` for the first ``n_first`` batches (while fewer labels
    than ``n_first - 1`` batches and one image), ``then`` afterwards."""

    def query(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
        _, y_lab = _pool.labeled_set(classifier, kwargs.get("X_labeled"),
                                     kwargs.get("y_labeled"), need="", strategy=name)
        n_lab = 0 if y_lab is None else len(y_lab)
        rule = first if n_lab < (n_first - 1) * n_instances + 1 else then
        return rule(classifier, X_pool, n_instances, random_state=random_state, **kwargs)

    def impl(classifier, X_pool, n, rng, **kwargs):
        idx, scores = query(classifier, X_pool, n, random_state=rng, **kwargs)
        return idx, scores, None

    query.__name__ = name.replace("-", "_") + "_sampling"
    register_strategy(name, impl, needs=("proba", "features"), pcb=False, query=query)
    return query


RULES = {
    "cg0-dropquery": (classguided_sampling, dropquery_sampling),
    "random0-auto": (random_sampling, auto_sampling),
    "pixels0-auto": (pixels_sampling, auto_sampling),
    "pixels01-auto": (pixels_sampling, auto_sampling, 2),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    rules = list(RULES)
    if "--rule" in argv:
        k = argv.index("--rule")
        rules = [argv[k + 1]]
        del argv[k:k + 2]
        if rules[0] not in RULES:
            raise SystemExit(f"--rule: {rules[0]!r} is not one of {sorted(RULES)}")
    _keep_pool_images()
    for name in rules:
        _first_then(name, *RULES[name])
    if "--strategies" not in argv:
        argv += ["--strategies", *rules]
    lowbudget_eval.main(argv)


if __name__ == "__main__":
    main()
