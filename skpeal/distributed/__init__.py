"""Pool scoring on a Ray cluster (optional extra: ``pip install "skpeal[ray]"``).

In an active-learning round the cost that grows with the pool is scoring it; this
package spreads that over Ray actors that live across queries (one machine with
``ray.init()``, a cluster with ``address="auto"``, GPUs with ``num_gpus_per_actor``) and
selects on the driver without gathering the pool. Only this package imports Ray, and only when used.

* :class:`RayPoolScorer`: score a pool and run a query strategy (what is exact and what
  is approximated is listed in its Notes);
* :func:`distributed_strategy`: the same as a modAL ``query_strategy``;
* :class:`ParquetFeatureStore`: frozen image features kept across rounds;
* :func:`init_ray`, :func:`shutdown_ray`: connect to a local or running Ray, and leave it.
"""

from ._scorer import RayPoolScorer, init_ray, plan_blocks, shutdown_ray
from ._strategy import distributed_strategy
from .store import ParquetFeatureStore, content_keys

__all__ = [
    "RayPoolScorer",
    "distributed_strategy",
    "ParquetFeatureStore",
    "content_keys",
    "init_ray",
    "shutdown_ray",
    "plan_blocks",
]
