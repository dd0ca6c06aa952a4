"""
Fit, predict and score like any scikit-learn classifier
=======================================================

``CLIPAdapterClassifier`` takes images and any hashable labels. Here: scikit-learn's
digits, upscaled to 32x32, on ``skpeal-tiny`` (a tiny, randomly initialised open_clip
model that ships with skpeal so that this runs anywhere in seconds; its accuracy is
far below what a pretrained CLIP gives). Both adapters are trained, with the
calibration loss on.
"""

import time

import numpy as np
from sklearn.datasets import load_digits

from skpeal import CLIPAdapterClassifier

digits = load_digits()
# 8x8 images with values 0..16 -> 32x32 uint8 images
X = (np.kron(digits.images, np.ones((4, 4))) * (255 / 16)).round().astype(np.uint8)
y = np.array([f"digit {d}" for d in digits.target])  # labels can be strings
X_train, y_train, X_test, y_test = X[:500], y[:500], X[500:1000], y[500:1000]

for adapter, extra in [
    ("prompt", dict(optimizer="adamw", lr=0.05)),
    ("lora", dict(optimizer="adamw", lr=0.01, lora_targets="attention+mlp")),
]:
    clf = CLIPAdapterClassifier(
        model="skpeal-tiny", pretrained=None, adapter=adapter, n_ctx=4,
        calibration="balanced", max_epochs=10, random_state=0, **extra,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    proba = clf.predict_proba(X_test)  # columns follow clf.classes_
    print(
        f"{adapter:>6}: accuracy {clf.score(X_test, y_test):.3f} (chance 0.100), "
        f"{clf.n_trainable_params_} trained parameters, fit {seconds:.1f} s, "
        f"mean max-probability {proba.max(axis=1).mean():.3f}"
    )
