"""
Zero-shot cold start: choosing the first images to label
========================================================

Active learning usually starts from a random batch, because a model needs labels before
it can say which images are informative. A CLIP-style model does not: from the class
names alone it scores every image zero-shot. Fitting with ``max_epochs=0`` and *no labels*
(``y=None``, ``classes=`` given) builds that zero-shot model; a query strategy then picks
the first batch from its predictions.

This runs in seconds on ``"skpeal-tiny"``, a tiny *randomly initialised* model, whose
zero-shot predictions are meaningless: it shows the mechanics. With a pretrained backbone
(``model="ViT-B-32", pretrained="openai"``) the zero-shot scores carry real information.
The offline backbone ``"effnet-lite0-minilm"`` is zero-shot above chance only for
ImageNet-like concepts (and at chance on digits).
"""

import numpy as np

from skpeal import CLIPAdapterClassifier
from skpeal.datasets import load_digits_images
from skpeal.strategies import class_balanced, entropy_sampling

data = load_digits_images()
X_pool, y_pool = data.X_train, data.y_train  # y_pool stays hidden: it plays the oracle
classes = np.arange(10)
budget = len(classes)

# %%
# Round 0 without any label: a zero-shot model over all classes. ``fit(X)`` without ``y``
# only prepares the frozen model (nothing is trained), so ``X`` can be any image.
zero_shot = CLIPAdapterClassifier(
    model="skpeal-tiny",
    pretrained=None,
    classes=classes,
    classnames=data.classnames,  # "zero", "one", ...: the words the prompts are made of
    n_ctx=4,  # the tiny model's text context is 16 tokens
    max_epochs=0,
    random_state=0,
)
zero_shot.fit(X_pool[:1])
proba = zero_shot.predict_proba(X_pool)
print(f"zero-shot: {proba.shape[0]} pool images scored over {proba.shape[1]} classes")

# %%
# Pick the first batch: the most uncertain images, balanced over the predicted classes
# (PCB) so that the first labels do not all come from the same class.
query = class_balanced(entropy_sampling, gamma=0.1, random_state=0)
first, scores = query(zero_shot, X_pool, n_instances=budget)
print("first batch:", first.tolist())
print("entropy of the picks:", np.round(scores, 3).tolist())

# %%
# Label them (here: look up the hidden labels) and train the first adapted model.
# ``classes`` keeps every class predictable even if the first batch misses some.
clf = CLIPAdapterClassifier(
    model="skpeal-tiny",
    pretrained=None,
    classes=classes,
    classnames=data.classnames,
    n_ctx=4,
    calibration="balanced",
    max_epochs=10,
    random_state=0,
)
clf.fit(X_pool[first], y_pool[first])
print("labels per class after round 0:", np.bincount(y_pool[first], minlength=10).tolist())
print(f"test accuracy after round 0: {clf.score(data.X_test, data.y_test):.3f} (chance 0.1)")
