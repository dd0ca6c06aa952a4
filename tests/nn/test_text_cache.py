"""The class text features are kept across prediction calls of a fitted model (issue 23)."""

import numpy as np
import pytest
import torch

from skpeal import CLIPAdapterClassifier
from skpeal.nn import inference

from ..conftest import TINY


@pytest.fixture
def counted(monkeypatch):
    """Count text-tower passes (``AdaptedCLIP.text_features`` calls)."""
    from skpeal.nn.model import AdaptedCLIP

    calls = []
    real = AdaptedCLIP.text_features
    monkeypatch.setattr(AdaptedCLIP, "text_features",
                        lambda self: calls.append(1) or real(self))
    return calls


@pytest.mark.parametrize("adapter", ["prompt", "lora"])
def test_text_features_are_kept_until_the_model_changes(small_images, counted, adapter,
                                                       tmp_path):
    X, y = small_images
    est = CLIPAdapterClassifier(**dict(TINY, adapter=adapter, max_epochs=2)).fit(X, y)
    counted.clear()
    first = est.predict_proba(X)
    assert len(counted) == 1
    np.testing.assert_array_equal(est.predict_proba(X), first)
    est.predict_proba_embed(X)
    assert len(counted) == 1 or adapter == "lora"  # LoRA: kept only if the merge restores
    kept = len(counted)

    # the same numbers as without the cache
    inference.clear_text_cache(est.model_)
    np.testing.assert_array_equal(est.predict_proba(X), first)
    assert len(counted) == kept + 1

    est.set_params(classnames=["x", "y", "z"])  # no effect on the fitted model until fit
    np.testing.assert_array_equal(est.predict_proba(X), first)

    # a refit (here: warm start of the same module), load_adapter, an edit in place
    est.set_params(classnames=None, max_epochs=3, random_state=1)
    est.fit(X, y)
    n = len(counted)
    second = est.predict_proba(X)
    assert len(counted) == n + 1 and not np.array_equal(second, first)
    est.save_adapter(tmp_path / "a.pt")
    with torch.no_grad():
        for p in est.model_.adapter_parameters():
            p.add_(0.5)
    n = len(counted)
    edited = est.predict_proba(X)
    assert len(counted) == n + 1 and not np.array_equal(edited, second)
    est.load_adapter(tmp_path / "a.pt")
    n = len(counted)
    np.testing.assert_allclose(est.predict_proba(X), second, rtol=1e-6, atol=1e-7)
    assert len(counted) == n + 1
