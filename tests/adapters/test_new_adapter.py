"""A new adapter is one registration: defined here, in the test file, and used everywhere.

The adapter below is a learnable per-dimension scale and shift of the image features (a
head on the frozen towers). It is registered with one call and then fitted, used to
predict, saved and loaded (safetensors and pickle), cloned, and driven through a round
of active learning, with no change to skpeal.
"""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from torch import nn

from skpeal import CLIPAdapterClassifier
from skpeal.adapters import _registry, adapter_names, frozen_towers, register_adapter
from skpeal.labeling.loop import ActiveLearningLoop, image_side_cached
from tests.conftest import TINY

NAME = "feature-scale"


class FeatureScale(nn.Module):
    """``normalize(scale * f + shift)``: the identity until trained."""

    def __init__(self, dim, init_scale):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init_scale)))
        self.shift = nn.Parameter(torch.zeros(dim))

    def adapt_image_features(self, features):
        return F.normalize(features * self.scale + self.shift, dim=-1)


def _build(context, *, init_scale):
    dim = context.model.text_projection.shape[1]  # the embedding width of open_clip's CLIP
    return FeatureScale(dim, init_scale)


def _check(options):
    if not float(options["init_scale"]) > 0:
        raise ValueError(f"init_scale must be > 0, got {options['init_scale']!r}")
    return {"init_scale": float(options["init_scale"])}


@pytest.fixture
def feature_scale():
    # the one call that adds the adapter
    kind = register_adapter(NAME, build=_build, options={"init_scale": 1.0}, check=_check)
    try:
        yield kind
    finally:
        _registry.unregister_adapter(NAME)
    assert NAME not in adapter_names()


def _est(**kw):
    return CLIPAdapterClassifier(**{**TINY, "adapter": NAME, "max_epochs": 3, "lr": 0.05, **kw})


def test_fit_predict_save_load(feature_scale, small_images, tmp_path):
    X, y = small_images
    assert NAME in adapter_names() and feature_scale.parts == (NAME,)
    assert frozen_towers(NAME) == (True, True)  # trains neither tower
    est = _est(adapter_params={"init_scale": 2.0})
    assert image_side_cached(est)  # the labelling loop's view: image features cached
    est.fit(X, y)
    m = est.model_
    assert m.vision_frozen and m.text_frozen and m.prompt is None and m.peft is None
    assert isinstance(m.feature_scale, FeatureScale)
    dim = m.feature_scale.scale.shape[0]
    assert est.n_trainable_params_ == 2 * dim
    assert not torch.allclose(m.feature_scale.scale, torch.full((dim,), 2.0))  # trained
    assert len(est.history_) == 3
    proba = est.predict_proba(X)
    assert proba.shape == (40, 3) and np.allclose(proba.sum(axis=1), 1)
    assert set(est.predict(X)) <= set(est.classes_)

    # it changes the predictions: the same model with the head reset to the identity
    with torch.no_grad():
        m.feature_scale.scale.fill_(1.0)
        m.feature_scale.shift.zero_()
    assert not np.allclose(est.predict_proba(X), proba)
    est.fit(X, y)  # a second fit starts fresh and is reproducible
    np.testing.assert_allclose(est.predict_proba(X), proba, atol=1e-6)

    path = tmp_path / "head.safetensors"
    est.save_adapter(path)
    loaded = _est(adapter_params={"init_scale": 2.0}).load_adapter(path)
    np.testing.assert_allclose(loaded.predict_proba(X), proba, atol=1e-6)
    with pytest.raises(ValueError, match="adapter_params"):  # another structure
        _est(adapter_params={"init_scale": 3.0}).load_adapter(path)
    blob = pickle.dumps(est)
    _registry.unregister_adapter(NAME)  # as in a process that never ran the registration
    again = pickle.loads(blob)  # (a Ray actor): the kind travels with the model
    assert NAME in adapter_names()
    np.testing.assert_allclose(again.predict_proba(X), proba, atol=1e-6)
    assert _registry.portable_kind(NAME)[0].name == NAME
    assert all(_registry.portable_kind(k) is None  # built-in kinds are not pickled along
               for k in ("prompt", "lora", "prompt+lora"))
    assert clone(est).get_params()["adapter_params"] == {"init_scale": 2.0}


def test_bad_options_are_refused_by_name(feature_scale, small_images):
    X, y = small_images
    with pytest.raises(ValueError, match=r"adapter_params has options \['scale'\].*init_scale"):
        _est(adapter_params={"scale": 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="init_scale must be > 0"):
        _est(adapter_params={"init_scale": -1}).fit(X, y)
    with pytest.raises(ValueError, match="adapter_params must be None or a dict"):
        _est(adapter_params=[1]).fit(X, y)
    with pytest.raises(ValueError, match=r"adapter='prompt' does not take"):
        CLIPAdapterClassifier(**TINY, adapter_params={"init_scale": 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="already registered"):
        register_adapter(NAME, build=_build)


def test_one_round_of_active_learning(feature_scale, small_images):
    X, y = small_images
    loop = ActiveLearningLoop(_est(), classes=sorted(set(y)), random_state=0)
    steps = list(loop.rounds(X, lambda rows: y[rows], 2, 4))
    assert [len(s.labelled) for s in steps] == [4, 8]
    assert len(set(steps[-1].labelled)) == 8
    last = steps[-1].model
    assert last.get_params()["adapter"] == NAME and len(last.history_) == 3
    assert last.model_.feature_scale.scale.requires_grad


def test_a_labelling_project_remembers_its_options(feature_scale, tmp_path):
    from skpeal.labeling import LabelingSession
    from tests.labeling.conftest import CLASSES, make_images

    make_images(tmp_path / "images", n=9)
    est = _est(adapter_params={"init_scale": 2.0})
    s = LabelingSession(tmp_path / "project", images=tmp_path / "images", classes=CLASSES,
                        estimator=est, batch_size=3)
    s.close()
    again = LabelingSession(tmp_path / "project")  # its own estimator, from the project
    try:
        p = again.loop.estimator.get_params()
        assert p["adapter"] == NAME and p["adapter_params"] == {"init_scale": 2.0}
        with pytest.raises(ValueError, match="adapter_params"):  # another adapter: refused
            LabelingSession(tmp_path / "project", estimator=_est())
    finally:
        again.close()


def test_scored_on_ray_actors_that_never_registered_it(feature_scale, digits):
    """The actors unpickle the model: the adapter's record travels with it."""
    import sys

    ray = pytest.importorskip("ray")
    from skpeal.distributed import RayPoolScorer
    from skpeal.strategies import entropy_sampling

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    X, y, _, _ = digits
    clf = _est(max_epochs=1, predict_batch_size=32).fit(X[:40], y[:40])
    pool = X[40:160]
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        scorer = RayPoolScorer(block_size=64)
        got = scorer.query(entropy_sampling, clf, pool, 5, random_state=2)
        want = entropy_sampling(clf, pool, 5, random_state=2)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-9)
        scorer.close()
    finally:
        if started:
            ray.shutdown()
