"""
Active learning with modAL: calibrated entropy sampling with class balancing
============================================================================

The loop of the paper (Narayanan et al., IJCNN 2025) driven by modAL's ``ActiveLearner``:
each round the adapter-tuned CLIP model scores the unlabelled pool, ``class_balanced``
(PCB) keeps the top 10 % most uncertain images and picks a class-balanced batch among
them, an oracle labels it, and the model is re-fitted on every label gathered so far.

To run in well under a minute on a CPU this script uses ``"skpeal-tiny"``, a tiny
*randomly initialised* CLIP-style model, on scikit-learn's 8x8 digits upscaled to 32x32
RGB: it shows the mechanics only. With a random frozen backbone the accuracy stays near
chance (about 0.1-0.15) and pseudo-labels are poor, so the labelled classes are not really
balanced; a pretrained backbone is what makes both work. For real work use e.g.
``model="ViT-B-32", pretrained="openai"`` (weights download on first use) and your images
(uint8 arrays, float arrays, tensors, or lists of file paths).

modAL 0.4.2.1 passes ``force_all_finite=`` to scikit-learn, which scikit-learn >= 1.8
rejects; importing ``skpeal.strategies`` installs a compatibility shim scoped to modAL
(undo with ``skpeal.compat.modal.disable()`` or ``SKPEAL_MODAL_COMPAT=0``).
"""

import time

import numpy as np
from modAL.models import ActiveLearner
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skpeal import CLIPAdapterClassifier
from skpeal.strategies import class_balanced, entropy_sampling

rng = np.random.default_rng(0)

# %%
# Data: digits as (n, 32, 32, 3) uint8 images; the pool hides its labels from the learner.
digits = load_digits()
images = np.kron(digits.images, np.ones((4, 4)))  # 8x8 -> 32x32
images = np.repeat((images * (255 / 16)).astype(np.uint8)[..., None], 3, axis=-1)
X_pool, X_test, y_pool, y_test = train_test_split(
    images, digits.target, test_size=300, stratify=digits.target, random_state=0
)
classes = np.arange(10)
names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
budget = len(classes)  # per-round budget = number of classes, as in the paper


def oracle(idx):
    """The human annotator: here, the hidden labels of the pool."""
    return y_pool[idx]


# %%
# Round 0: a random seed set of one budget.
seed = rng.choice(len(X_pool), size=budget, replace=False)
X_seed, y_seed = X_pool[seed], oracle(seed)
X_pool, y_pool = np.delete(X_pool, seed, axis=0), np.delete(y_pool, seed)

learner = ActiveLearner(
    estimator=CLIPAdapterClassifier(
        model="skpeal-tiny",  # tiny random test model (32 px input); see above
        pretrained=None,
        classes=classes,  # all classes known up front, labelled or not
        classnames=names,
        n_ctx=4,  # the tiny model's text context is 16 tokens
        calibration="balanced",  # the paper's count-balanced calibration loss
        max_epochs=5,
        random_state=0,
    ),
    query_strategy=class_balanced(entropy_sampling, gamma=0.1, random_state=0),
    X_training=X_seed,
    y_training=y_seed,
)

# %%
# Rounds 1..7: query, label, re-fit.
start = time.perf_counter()
accuracy = learner.score(X_test, y_test)
print(f"round 0: {len(learner.y_training):3d} labels, test accuracy {accuracy:.3f}")
for round_ in range(1, 8):
    idx, X_query = learner.query(X_pool, n_instances=budget)
    learner.teach(X_query, oracle(idx))
    X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
    counts = np.bincount(learner.y_training, minlength=len(classes))
    print(
        f"round {round_}: {len(learner.y_training):3d} labels, "
        f"test accuracy {learner.score(X_test, y_test):.3f}, "
        f"labels per class {counts.min()}-{counts.max()}"
    )
print(f"{time.perf_counter() - start:.1f} s for 7 rounds")
