"""Tests of skpeal.compat.modal and of modAL loops on the installed scikit-learn."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import skpeal.strategies  # noqa: F401 - enables the shim, as a modAL loop does
from skpeal.compat import modal as modal_compat

modal_learners = pytest.importorskip("modAL.models.learners")
from modAL.models import ActiveLearner, Committee  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.utils import check_X_y as sklearn_check_X_y  # noqa: E402

SKLEARN_REJECTS = modal_compat._sklearn_rejects_force_all_finite(sklearn_check_X_y)
needs_new_sklearn = pytest.mark.skipif(
    not SKLEARN_REJECTS, reason="the installed scikit-learn still accepts force_all_finite"
)


def _run_python(code, **env):
    """Run ``code`` in a fresh interpreter (import hooks need one); return its stdout."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


@pytest.fixture(autouse=True)
def _compat_enabled():
    modal_compat.enable()
    yield
    modal_compat.enable()


@pytest.fixture(scope="module")
def digits_flat():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


# ----------------------------------------------------------------------- the compat layer
@needs_new_sklearn
def test_unpatched_modal_fails_on_this_scikit_learn():
    # The reason the layer exists: without it, fit/teach raise TypeError.
    X, y = np.random.default_rng(0).normal(size=(10, 3)), np.arange(10) % 2
    learner = ActiveLearner(LogisticRegression(), X_training=X, y_training=y)
    assert modal_compat.disable() is True
    assert modal_compat.is_active() is False
    with pytest.raises(TypeError, match="force_all_finite"):
        learner.teach(X[:2], y[:2])
    with pytest.raises(TypeError, match="force_all_finite"):
        learner.fit(X, y)


@needs_new_sklearn
def test_patch_is_scoped_idempotent_and_undoable():
    assert modal_compat.is_active()
    wrapper = modal_learners.check_X_y
    assert wrapper is not sklearn_check_X_y and wrapper.__wrapped__ is sklearn_check_X_y
    import sklearn.utils
    import sklearn.utils.validation

    # scikit-learn itself is untouched.
    assert sklearn.utils.check_X_y is sklearn_check_X_y
    assert sklearn.utils.validation.check_X_y is sklearn_check_X_y
    assert modal_compat.enable() is True and modal_compat.enable() is True
    assert modal_learners.check_X_y is wrapper  # no double wrapping
    assert modal_compat.disable() is True
    assert modal_learners.check_X_y is sklearn_check_X_y
    assert modal_compat.disable() is False
    assert modal_compat.enable() is True
    assert modal_compat.is_active()


def test_patch_leaves_old_scikit_learn_alone(monkeypatch):
    def old_check_X_y(X, y, force_all_finite=True, ensure_all_finite=None):
        return X, y

    modal_compat.disable()
    monkeypatch.setattr(modal_learners, "check_X_y", old_check_X_y)
    assert modal_compat.enable() is False
    assert modal_learners.check_X_y is old_check_X_y


@needs_new_sklearn
def test_wrapper_translates_force_all_finite():
    X = np.array([[0.0, np.nan], [1.0, 2.0]])
    y = np.array([0, 1])
    learner = ActiveLearner(LogisticRegression(), X_training=np.ones((2, 2)), y_training=y)
    with pytest.raises(ValueError, match="NaN"):
        learner.teach(X, y)
    # force_all_finite=False reaches scikit-learn as ensure_all_finite=False. (modAL forwards
    # an ActiveLearner's unknown keywords to estimator.fit, so no X_training here.)
    tolerant = ActiveLearner(ImageRecorder(), force_all_finite=False)
    tolerant.teach(X, y)
    assert tolerant.X_training.shape == (2, 2) and tolerant.estimator.seen_[1] == 2
    modal_learners.check_X_y(X, y, force_all_finite=False)
    with pytest.raises(ValueError, match="NaN"):
        modal_learners.check_X_y(X, y, force_all_finite=True)


def test_import_skpeal_is_light_and_no_import_hook_is_installed():
    lines = _run_python(
        """
        import sys
        n_hooks = len(sys.meta_path)
        import skpeal
        print("modAL" in sys.modules, "torch" in sys.modules, len(sys.meta_path) == n_hooks)
        import skpeal.strategies
        from skpeal.compat import modal
        print("modAL.models.learners" in sys.modules, len(sys.meta_path) == n_hooks)
        print(modal.is_active())
        from modAL.models import ActiveLearner
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        X = np.random.default_rng(0).normal(size=(10, 3))
        learner = ActiveLearner(LogisticRegression(), X_training=X, y_training=np.arange(10) % 2)
        learner.teach(X[:2], np.array([0, 1]))
        print(learner.X_training.shape[0])
        """
    )
    assert lines[0] == "False False True"  # import skpeal: no modAL, no torch, no hook
    # import skpeal.strategies patches modAL's learners right away (modAL is installed
    # here), with no meta-path hook; modAL itself imports torch, skpeal's strategies do not
    assert lines[1] == "True True"
    assert lines[2] == str(SKLEARN_REJECTS)
    assert lines[3] == "12"


def test_strategies_do_not_import_torch_without_modal():
    lines = _run_python(
        """
        import sys
        import skpeal.strategies
        print("torch" in sys.modules, "modAL" in sys.modules)
        """,
        SKPEAL_MODAL_COMPAT="0",
    )
    assert lines == ["False False"]


@needs_new_sklearn
def test_import_skpeal_alone_leaves_modal_alone():
    lines = _run_python(
        """
        import skpeal
        from skpeal import CLIPAdapterClassifier
        from modAL.models import ActiveLearner
        from skpeal.compat import modal
        print(modal.is_active())
        modal.enable()
        print(modal.is_active())
        """
    )
    assert lines == ["False", "True"]


def test_issue_import_order_runs_as_written():
    # modAL imported first, then skpeal (the order of the README loop).
    lines = _run_python(
        """
        import numpy as np
        from modAL.models import ActiveLearner
        from skpeal.strategies import entropy_sampling, class_balanced
        from sklearn.linear_model import LogisticRegression
        X = np.random.default_rng(0).normal(size=(60, 3)); y = np.arange(60) % 3
        learner = ActiveLearner(LogisticRegression(), class_balanced(entropy_sampling),
                                X_training=X[:6], y_training=y[:6])
        X_pool, y_pool = X[6:], y[6:]
        for _ in range(3):
            idx, X_query = learner.query(X_pool, n_instances=3)
            learner.teach(X_query, y_pool[idx])
            X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
        print(learner.X_training.shape[0])
        """
    )
    assert lines == ["15"]


@needs_new_sklearn
def test_environment_variable_turns_the_patch_off():
    lines = _run_python(
        """
        import skpeal.strategies
        from skpeal.compat import modal
        from modAL.models import ActiveLearner
        print(modal.is_active())
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        learner = ActiveLearner(LogisticRegression(), X_training=np.ones((2, 2)), y_training=[0, 1])
        try:
            learner.teach(np.ones((2, 2)), [0, 1])
        except TypeError as exc:
            print("TypeError", "force_all_finite" in str(exc))
        """,
        SKPEAL_MODAL_COMPAT="0",
    )
    assert lines == ["False", "TypeError True"]


def test_skorch_pin_does_not_break_modal_imports():
    # modAL pins skorch==0.9.0; only modAL.dropout imports it. The modules skpeal users need
    # must import without touching skorch.
    lines = _run_python(
        """
        import sys
        import skpeal
        import modAL.models, modAL.uncertainty, modAL.disagreement, modAL.batch
        print("skorch" in sys.modules)
        """
    )
    assert lines == ["False"]


# ----------------------------------------------------------------------------- image inputs
class ImageRecorder:
    """A probabilistic 'estimator' accepting any image container; records what it saw."""

    classes_ = np.array([0, 1])

    def fit(self, X, y):
        self.seen_ = (type(X).__name__, len(X), np.asarray(y).shape)
        return self

    def predict_proba(self, X):
        n = len(X)
        p = (np.arange(n) % 7 + 1) / 8.0
        return np.column_stack([p, 1 - p])


def _paths(n):
    return [f"/images/img_{i}.png" for i in range(n)]


@pytest.mark.parametrize(
    "make",
    [
        lambda n: np.zeros((n, 32, 32, 3), dtype=np.uint8),
        lambda n: np.zeros((n, 32, 32), dtype=np.float32),
        _paths,
    ],
    ids=["uint8-NHWC", "float-NHW", "paths"],
)
def test_active_learner_accepts_image_inputs(make):
    from skpeal.strategies import entropy_sampling

    X, y = make(12), np.arange(12) % 2
    learner = ActiveLearner(ImageRecorder(), entropy_sampling, X_training=X[:4], y_training=y[:4])
    pool = make(20)
    idx, X_query = learner.query(pool, n_instances=3, random_state=0)
    assert len(X_query) == 3
    learner.teach(X_query, np.array([0, 1, 0]))
    assert learner.estimator.seen_[1:] == (7, (7,))
    assert len(learner.X_training) == 7


def test_active_learner_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    X = torch.zeros(6, 3, 32, 32)
    learner = ActiveLearner(ImageRecorder(), X_training=X, y_training=np.arange(6) % 2)
    learner.teach(torch.ones(2, 3, 32, 32), np.array([0, 1]))
    assert tuple(learner.X_training.shape) == (8, 3, 32, 32)


def test_modal_check_on_4d_arrays_keeps_shape():
    X = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    out, _ = modal_learners.check_X_y(
        X, np.arange(5), accept_sparse=True, ensure_2d=False, allow_nd=True,
        multi_output=True, dtype=None, force_all_finite=True,
    )  # fmt: skip
    assert out.shape == X.shape and out.dtype == np.uint8


# -------------------------------------------------------------- modAL's built-in strategies
@pytest.mark.parametrize("name", ["uncertainty_sampling", "margin_sampling", "entropy_sampling"])
def test_modal_builtin_strategies_loop(digits_flat, name):
    import modAL.uncertainty

    X, y = digits_flat
    seed = np.arange(0, 400, 20)
    pool = np.setdiff1d(np.arange(400), seed)
    learner = ActiveLearner(
        LogisticRegression(max_iter=300),
        getattr(modAL.uncertainty, name),
        X_training=X[seed],
        y_training=y[seed],
    )
    X_pool, y_pool = X[pool], y[pool]
    for _ in range(3):
        idx, X_query = learner.query(X_pool, n_instances=10)
        assert len(np.unique(idx)) == 10
        learner.teach(X_query, y_pool[idx])
        X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
    assert learner.X_training.shape[0] == 50
    assert learner.score(X, y) > 0.5


def test_modal_committee_loop(digits_flat):
    from modAL.disagreement import vote_entropy_sampling

    from skpeal.strategies import class_balanced, entropy_sampling

    X, y = digits_flat
    members = [
        ActiveLearner(
            LogisticRegression(max_iter=300, C=c),
            X_training=X[k:400:20],
            y_training=y[k:400:20],
        )
        for k, c in [(0, 1.0), (1, 0.1)]
    ]
    X_pool, y_pool = X[2::3], y[2::3]
    for strategy in [vote_entropy_sampling, class_balanced(entropy_sampling)]:
        committee = Committee(learner_list=members, query_strategy=strategy)
        for _ in range(2):
            idx, X_query = committee.query(X_pool, n_instances=5)
            assert len(np.unique(idx)) == 5
            committee.teach(X_query, y_pool[idx])
            X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
    assert all(m.X_training.shape[0] == 20 + 20 for m in members)


# ------------------------------------------------------------------- the CLIP estimator loop
def test_modal_loop_with_clip_estimator():
    estimator = pytest.importorskip("skpeal.estimator", reason="skpeal.estimator not ready")
    from skpeal.strategies import class_balanced, entropy_sampling

    rng = np.random.default_rng(0)
    n = 48
    y = np.arange(n) % 3
    X = rng.integers(0, 60, size=(n, 32, 32, 3), dtype=np.uint8)
    for c in range(3):  # one bright colour channel per class
        X[y == c, :, :, c] += 180
    learner = ActiveLearner(
        estimator=estimator.CLIPAdapterClassifier(
            model="skpeal-tiny", pretrained=None, n_ctx=4, max_epochs=1, classes=[0, 1, 2],
            calibration="balanced", random_state=0,
        ),
        query_strategy=class_balanced(entropy_sampling, gamma=0.5, random_state=0),
        X_training=X[:6],
        y_training=y[:6],
    )  # fmt: skip
    X_pool, y_pool = X[6:], y[6:]
    for _ in range(3):
        idx, X_query = learner.query(X_pool, n_instances=3)
        assert len(np.unique(idx)) == 3 and X_query.shape == (3, 32, 32, 3)
        learner.teach(X_query, y_pool[idx])
        X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
    assert learner.X_training.shape == (15, 32, 32, 3)
    proba = learner.predict_proba(X_pool)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert modal_compat.is_active() == SKLEARN_REJECTS
