"""
The paper's protocol on a folder of images
==========================================

:mod:`skpeal.experiment` runs the active-learning protocol of the paper end to end:
the pool is the training split with its labels hidden, each round labels one budget of
images (by default as many as there are classes) chosen by a strategy through PCB class
balancing, a fresh adapter is trained on every label so far, and the test accuracy,
calibration error and error-detection AUROC are recorded. Strategies named
``"calibrated-<name>"`` train with the calibration loss; the others with cross-entropy
only. Every completed round is saved, so an interrupted run resumes where it stopped.

Your own data only needs a folder with one sub-folder per class (optionally under
``train/`` and ``test/``). Here we draw one: circles, squares, triangles and crosses.
The same run from the command line::

    skpeal run --data shapes/ --model skpeal-tiny --strategies random entropy \\
        calibrated-entropy --rounds 4 --epochs 10 --n-ctx 4 --out runs/shapes
    skpeal report runs/shapes

To keep this to seconds the backbone is ``"skpeal-tiny"``, a tiny *randomly
initialised* model: the curves show the mechanics, not the method's benefit. For real
runs use a pretrained backbone (``--model ViT-B-32 --pretrained openai``, or the
offline ``effnet-lite0-minilm``), more rounds and several seeds.
"""

import os
import shutil
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw

from skpeal.experiment import ExperimentConfig, run_experiment

# %%
# An image folder: ``shapes/<class>/<n>.png``, 40 images of each of 4 classes, each
# shape in a random colour, size and position on a random background.
root = tempfile.mkdtemp()
folder = os.path.join(root, "shapes")
rng = np.random.default_rng(0)


def draw(shape, rng, size=48):
    """One RGB image of ``shape``."""
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 120, 3)))
    d = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(130, 256, 3))
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:  # cross
        w = r / 3
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)
    return img


for shape in ["circle", "square", "triangle", "cross"]:
    os.makedirs(os.path.join(folder, shape))
    for i in range(40):
        draw(shape, rng).save(os.path.join(folder, shape, f"{i:03d}.png"))

# %%
# The run: three strategies, 4 rounds of 4 labels, one seed. ``estimator_params`` go to
# every ``CLIPAdapterClassifier`` the run trains.
config = ExperimentConfig(
    data=folder,  # or "fashion-mnist", "digits"
    model="skpeal-tiny",
    pretrained=None,
    adapter="prompt",
    strategies=["random", "entropy", "calibrated-entropy"],
    rounds=4,
    seeds=[0],
    estimator_params=dict(max_epochs=10, n_ctx=4, optimizer="adamw", lr=0.05),
)
out = os.path.join(root, "run")
results = run_experiment(config, out, progress=False)
print(results[["strategy", "round", "n_labels", "accuracy", "ece"]].to_string(index=False))

# %%
# The summary (also in ``summary.md``) and the files the report wrote: ``results.csv``,
# ``summary.csv``, ``selections.json``, ``learning_curves.png`` and ``reliability.png``.
print(open(os.path.join(out, "summary.md")).read())
print(sorted(os.listdir(out)))

# %%
# The learning curves, from the returned table (one seed here, so no spread).
fig, ax = plt.subplots(figsize=(6, 3.5))
for strategy, rows in results.groupby("strategy", sort=False):
    ax.plot(rows["n_labels"], rows["accuracy"], marker="o", label=strategy)
ax.set_xlabel("number of labelled images")
ax.set_ylabel("test accuracy")
ax.set_title("shapes, skpeal-tiny (random weights): mechanics only", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

shutil.rmtree(root)
