"""
Tuning the calibration weight with GridSearchCV
===============================================

``CLIPAdapterClassifier`` is a scikit-learn estimator, so its parameters can be searched
like any other's. Here :class:`~sklearn.model_selection.GridSearchCV` compares
cross-entropy alone (``calibration_weight=0``) with two weights of the calibration loss,
scoring each by accuracy and by expected calibration error (ECE, lower is better) with
2-fold cross-validation.

It runs in seconds on ``"skpeal-tiny"``, a tiny *randomly initialised* model: the numbers
show the mechanics, not the effect of the loss (for that, use a pretrained backbone such
as ``model="ViT-B-32", pretrained="openai"`` or the offline ``"effnet-lite0-minilm"``).
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skpeal import CLIPAdapterClassifier
from skpeal.datasets import load_digits_images
from skpeal.metrics import expected_calibration_error

# %%
# Data: 200 of scikit-learn's 8x8 digits as grey ``uint8`` images (the estimator resizes
# them to the backbone's input size).
data = load_digits_images()
X, y = data.X_train[:200], data.y_train[:200]

# %%
# The estimator and the grid. ``calibration_weight`` is the lambda of the calibration
# term; 0 trains with cross-entropy only.
clf = CLIPAdapterClassifier(
    model="skpeal-tiny",
    pretrained=None,
    classnames=data.classnames,  # prompt text of each class (labels are 0..9)
    n_ctx=4,
    calibration="balanced",
    max_epochs=5,
    optimizer="adamw",
    lr=0.05,
    random_state=0,
)
param_grid = {"calibration_weight": [0.0, 1.0, 3.0]}

# ECE needs probabilities: a scorer on predict_proba. The labels here are 0..9, the same
# as the column indices, so no ``classes=`` argument is needed.
ece = make_scorer(
    expected_calibration_error, response_method="predict_proba", greater_is_better=False
)
search = GridSearchCV(
    clf,
    param_grid,
    scoring={"accuracy": "accuracy", "ece": ece},
    refit="accuracy",
    cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
)
search.fit(X, y)

# %%
# Results: one row per weight. scikit-learn negates "lower is better" scores.
weights = np.array(param_grid["calibration_weight"])
accuracy = search.cv_results_["mean_test_accuracy"]
ece_values = -search.cv_results_["mean_test_ece"]
for w, acc, e in zip(weights, accuracy, ece_values):
    print(f"calibration_weight={w:.1f}: accuracy {acc:.3f}, ECE {e:.3f}")
print("best by accuracy:", search.best_params_)

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(weights, accuracy, marker="o", label="accuracy")
ax.plot(weights, ece_values, marker="s", label="ECE (lower is better)")
ax.set_xlabel("calibration_weight")
ax.set_title("2-fold CV on skpeal-tiny (mechanics only)", fontsize=9)
ax.legend()
fig.tight_layout()
plt.show()
