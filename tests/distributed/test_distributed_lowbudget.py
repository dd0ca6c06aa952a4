"""The low-budget strategies on Ray: the pool is gathered, the selection is exact."""

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from skpeal import CLIPAdapterClassifier  # noqa: E402
from skpeal.distributed import RayPoolScorer  # noqa: E402
from skpeal.strategies import lowbudget as lb  # noqa: E402
from skpeal.strategies.uherding import uherding_sampling  # noqa: E402
from tests.conftest import TINY  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_low_budget_strategies_on_ray_are_exact(local_ray, digits):
    X, y, _, _ = digits
    clf = CLIPAdapterClassifier(**TINY, max_epochs=1, predict_batch_size=32).fit(X[:40], y[:40])
    pool = X[40:200]
    scorer = RayPoolScorer(block_size=64)
    for query in (lb.typiclust_sampling, lb.probcover_sampling, lb.maxherding_sampling,
                  lb.dropquery_sampling, lb.classguided_sampling, lb.auto_sampling,
                  uherding_sampling):
        got = scorer.query(query, clf, pool, 6, random_state=3, X_labeled=X[:40],
                           y_labeled=y[:40])
        want = query(clf, pool, 6, random_state=3, X_labeled=X[:40], y_labeled=y[:40])
        np.testing.assert_array_equal(got[0], want[0], err_msg=query.__name__)
    # above exact_max_rows they are refused with a clear message, not approximated
    with pytest.raises(ValueError, match="exact_max_rows"):
        RayPoolScorer(block_size=64, exact_max_rows=10).query(
            lb.typiclust_sampling, clf, pool, 6, random_state=3)
