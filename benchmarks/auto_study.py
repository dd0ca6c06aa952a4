"""Would a class-guided first batch close ``auto``'s gap to the best strategy? (issue 22 item 5)

``auto`` (DropQuery until 10 labels per class, then margin with PCB) was 2.3 and 0.6 AULC
points behind ``classguided`` on digits and Fashion-MNIST in ``lowbudget_eval.py``'s runs.
This study registers one candidate rule, ``cg0-dropquery``: the class-guided cold start
for the very first batch (no label yet), then DropQuery (the rule the issue suggests, fixed
before any run), runs it through the same protocol, seeds and sets as
``benchmarks/lowbudget_eval.py`` into the same output folder (so it is paired per seed
with the strategies already there) and prints the report with it included::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/auto_study.py --out /tmp/lowbudget_eval

``auto`` itself is not changed here: the study only reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lowbudget_eval  # noqa: E402

from skpeal import _pool  # noqa: E402
from skpeal.strategies import register_strategy  # noqa: E402
from skpeal.strategies.lowbudget import (  # noqa: E402
    classguided_sampling,
    dropquery_sampling,
)

NAME = "cg0-dropquery"


def cg0_dropquery_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    """The class-guided cold start while nothing is labelled, DropQuery afterwards."""
    _, y_lab = _pool.labeled_set(classifier, kwargs.get("X_labeled"), kwargs.get("y_labeled"),
                                 need="", strategy=NAME)
    if y_lab is None or not len(y_lab):
        return classguided_sampling(classifier, X_pool, n_instances,
                                    random_state=random_state, **kwargs)
    return dropquery_sampling(classifier, X_pool, n_instances, random_state=random_state,
                              **kwargs)


def _impl(classifier, X_pool, n, rng, **kwargs):
    idx, scores = cg0_dropquery_sampling(classifier, X_pool, n, random_state=rng, **kwargs)
    return idx, scores, None


def main(argv=None):
    register_strategy(NAME, _impl, needs=("proba", "features"), pcb=False,
                      query=cg0_dropquery_sampling)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--strategies" not in argv:
        argv += ["--strategies", NAME]
    lowbudget_eval.main(argv)


if __name__ == "__main__":
    main()
