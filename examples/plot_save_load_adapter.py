"""
Saving and loading a fitted model
=================================

Two ways to keep a fitted ``CLIPAdapterClassifier``:

* ``joblib.dump`` / ``pickle``: the whole estimator. The file holds the backbone
  *description* (``model``, ``pretrained``) and the adapter weights, never the backbone
  weights, so it stays small; loading rebuilds the backbone from the same name/file/cache
  (on the CPU when the machine has no GPU).
* ``save_adapter`` / ``load_adapter``: only the adapter tensors, in a safetensors file,
  with the backbone description and ``classes_`` as metadata. Loading reads no pickle, so
  a file from someone else cannot run code. The estimator that loads it must have the
  same adapter-shaping parameters (``model``, ``pretrained``, ``adapter``, ``n_ctx``, ...).

Runs in seconds on ``"skpeal-tiny"`` (a tiny random test model).
"""

import os
import shutil
import tempfile

import joblib
import numpy as np

from skpeal import CLIPAdapterClassifier
from skpeal.datasets import load_digits_images

data = load_digits_images()
X_train, y_train = data.X_train[:200], data.y_train[:200]
X_test = data.X_test[:100]

params = dict(
    model="skpeal-tiny",
    pretrained=None,
    classnames=data.classnames,
    n_ctx=4,
    max_epochs=5,
    random_state=0,
)
clf = CLIPAdapterClassifier(**params).fit(X_train, y_train)
proba = clf.predict_proba(X_test)

folder = tempfile.mkdtemp()

# %%
# The whole estimator with joblib.
path = os.path.join(folder, "model.joblib")
joblib.dump(clf, path)
restored = joblib.load(path)
same = np.allclose(restored.predict_proba(X_test), proba, atol=1e-6)
print(f"joblib file: {os.path.getsize(path) / 1024:.1f} KiB; same probabilities: {same}")

# %%
# Only the adapter, as safetensors. A fresh estimator with the same parameters loads it;
# ``classes_`` comes from the file, no ``fit`` is needed.
path = os.path.join(folder, "adapter.safetensors")
clf.save_adapter(path)
loaded = CLIPAdapterClassifier(**params).load_adapter(path)
same = np.allclose(loaded.predict_proba(X_test), proba, atol=1e-6)
print(
    f"adapter file: {os.path.getsize(path) / 1024:.1f} KiB "
    f"({clf.n_trainable_params_} parameters); same probabilities: {same}"
)
print("classes from the file:", loaded.classes_.tolist())

# %%
# Parameters that shape the adapter must match; anything else may differ.
try:
    CLIPAdapterClassifier(**{**params, "n_ctx": 8}).load_adapter(path)
except ValueError as exc:
    print("mismatch detected:", str(exc)[:90], "...")

shutil.rmtree(folder)
