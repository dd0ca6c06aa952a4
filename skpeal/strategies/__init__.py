"""Query strategies for pool-based active learning, usable with modAL.

Three layers, kept apart as in modAL:

* **score functions** on a probability array (``entropy_scores``, ``margin_scores``,
  ``least_confidence_scores``), higher = more informative;
* **query functions** with modAL's signature
  ``f(classifier, X_pool, n_instances=1, *, random_state=None, **kw) -> (indices, scores)``.
  The return value is always a 2-tuple: ``indices`` (``np.intp``, unique, in range,
  exactly ``n_instances`` of them) and ``scores`` (float64, the score of each picked row).
  modAL 0.4.2 unpacks two values inside a bare ``except``, so anything else is misread;
* **wrappers**: :func:`class_balanced` (PCB class balancing), a :class:`ClassBalanced`.

The low-budget strategies (TypiClust, ProbCover, MaxHerding, DropQuery, the class-guided
cold start and ``auto``) and their selectors on feature arrays live in
:mod:`skpeal.strategies.lowbudget`, Uncertainty Herding in
:mod:`skpeal.strategies.uherding`; their query functions are exported here too.

How a strategy finds what it needs
----------------------------------
``classifier`` may be a fitted estimator or a modAL learner; modAL 0.4.2.1 passes the
``ActiveLearner`` itself (``self.query_strategy(self, X_pool, ...)``). Probabilities come
from ``classifier.predict_proba``. Feature-based strategies look at the *estimator*
(``classifier.estimator`` for a learner, else ``classifier``) and take features from

1. ``estimator.predict_proba_embed(X) -> (proba, features)`` when it exists (one model pass,
   as :class:`skpeal.CLIPAdapterClassifier` provides), else
2. ``estimator.embed(X)`` together with ``classifier.predict_proba(X)``, else
3. the flattened input ``X.reshape(len(X), -1)`` as float (plain scikit-learn estimators).

The labelled set (needed by ``coreset_sampling``, ``featdist_sampling`` and for the class
counts of ``class_balanced``) is taken from the ``X_labeled`` / ``y_labeled`` keywords when
given (``learner.query(X_pool, n_instances=k, X_labeled=X, y_labeled=y)`` forwards them),
else from the learner's ``X_training`` / ``y_training`` attributes. Feature-based
strategies embed the labelled set too (a pass over the labelled set, not over the pool).

Randomness (tie breaking, random picks) comes only from
``np.random.default_rng(random_state)``; the global NumPy RNG is never used.

The registry
------------
Every strategy is one :class:`Strategy` record made by :func:`register_strategy`: its
name on the command line, its query function and implementation, what it needs
(probabilities, features, gradients, the labelled set) and how it runs on Ray. The
experiment runner, the labelling loop, :func:`class_balanced` and
:mod:`skpeal.distributed` read that registry and nothing else, so a new strategy is one
function and one registration call (see the "Extending skpeal" page of the user guide).
"""

from __future__ import annotations

from ..compat import modal as _modal_compat
from ._registry import (
    NEEDS,  # noqa: F401 (a tuple, not in __all__: the exports are all callables)
    QueryTable,
    Strategy,
    get_strategy,
    register_strategy,
    strategy_names,
    unregister_strategy,
)
from ._uncertainty import (
    check_proba,
    entropy_sampling,
    entropy_scores,
    least_confidence_sampling,
    least_confidence_scores,
    margin_sampling,
    margin_scores,
    random_sampling,
)

# isort: off
# Registration order is the order of strategy_names() (uncertainty, then feature-based).
from ._diversity import badge_sampling, coreset_sampling, featdist_sampling
from ._balancing import ClassBalanced, class_balanced
from . import lowbudget  # noqa: F401 (registers the low-budget strategies and "auto")
from .lowbudget import (
    auto_sampling,
    classguided_sampling,
    dropquery_sampling,
    maxherding_sampling,
    probcover_sampling,
    typiclust_sampling,
)
from . import uherding  # noqa: F401 (registers "uherding")
from .uherding import uherding_sampling
# isort: on

# modAL 0.4.2.1 passes force_all_finite= to scikit-learn's check_X_y, which scikit-learn
# >= 1.8 rejects: importing the strategies (what a modAL loop with skpeal does) patches
# that name inside modAL only. See skpeal.compat.modal; undo with its disable() or
# SKPEAL_MODAL_COMPAT=0.
_modal_compat.enable_from_env()

__all__ = [
    "check_proba",
    "entropy_scores",
    "margin_scores",
    "least_confidence_scores",
    "random_sampling",
    "entropy_sampling",
    "margin_sampling",
    "least_confidence_sampling",
    "badge_sampling",
    "coreset_sampling",
    "featdist_sampling",
    "typiclust_sampling",
    "probcover_sampling",
    "maxherding_sampling",
    "dropquery_sampling",
    "classguided_sampling",
    "auto_sampling",
    "uherding_sampling",
    "class_balanced",
    "ClassBalanced",
    "Strategy",
    "register_strategy",
    "unregister_strategy",
    "get_strategy",
    "strategy_names",
    "QueryTable",
]
