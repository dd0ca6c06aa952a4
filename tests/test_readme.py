"""The README's Python code blocks run verbatim."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks():
    text = README.read_text()
    blocks = []
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
        blocks.append((headings[-1] if headings else "top", match.group(1)))
    return blocks


BLOCKS = _blocks()


def test_readme_shows_sklearn_and_modal_examples():
    sections = [name for name, _ in BLOCKS]
    assert "A minimal example" in sections
    assert "Active learning with modAL" in sections
    assert any("ActiveLearner(" in code for _, code in BLOCKS)


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[n for n, _ in BLOCKS])
def test_readme_block_runs(code):
    namespace = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)  # verbatim, in a fresh namespace

    # What the blocks promise in their comments.
    if "proba" in namespace:
        clf, proba = namespace["clf"], namespace["proba"]
        assert proba.dtype == np.float64
        assert proba.shape[1] == len(clf.classes_)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        assert set(namespace["labels"]) <= set(clf.classes_)
        features = namespace["features"]
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    if "learner" in namespace:
        learner = namespace["learner"]
        assert len(learner.y_training) > 4, "teach() added no labels"
        assert len(np.unique(learner.y_training)) >= 2
        # the queried images left the pool: pool + labelled = the 100 images made
        assert len(namespace["X_pool"]) + len(learner.y_training) == 100
