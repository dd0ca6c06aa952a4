"""Two first-batch rules measured against ``auto`` (issue 22 item 5, issue 23 item 5).

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

Usage::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/auto_study.py --out /tmp/lowbudget_eval
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/auto_study.py --rule random0-auto \\
        --out /tmp/lowbudget_eval

``--rule`` picks one (default: both); every other option is ``lowbudget_eval.py``'s.
Neither ``auto`` nor the labelling session is changed here: the study only reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lowbudget_eval  # noqa: E402

from skpeal import _pool  # noqa: E402
from skpeal.strategies import random_sampling, register_strategy  # noqa: E402
from skpeal.strategies.lowbudget import (  # noqa: E402
    auto_sampling,
    classguided_sampling,
    dropquery_sampling,
)


def _first_then(name, first, then):
    """A query function: ``first`` while nothing is labelled, ``then`` afterwards."""

    def query(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
        _, y_lab = _pool.labeled_set(classifier, kwargs.get("X_labeled"),
                                     kwargs.get("y_labeled"), need="", strategy=name)
        rule = first if y_lab is None or not len(y_lab) else then
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
    for name in rules:
        _first_then(name, *RULES[name])
    if "--strategies" not in argv:
        argv += ["--strategies", *rules]
    lowbudget_eval.main(argv)


if __name__ == "__main__":
    main()
