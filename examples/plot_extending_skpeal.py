"""
Extending skpeal: a new query strategy and a new backbone
=========================================================

Both extension points are plain Python:

* a **query strategy** is a function with modAL's signature
  ``f(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs)`` that returns
  the 2-tuple ``(indices, scores)``; it then works on its own, inside
  :func:`skpeal.strategies.class_balanced`, and as a modAL ``query_strategy``;
* a **backbone** is a factory ``factory(pretrained) -> skpeal.backbones.Backbone``
  registered under a name with :func:`skpeal.backbones.register_backbone`; the name is then
  accepted as ``model=`` everywhere, pickles included.

Runs in seconds: the backbone here is a small randomly initialised open_clip CLIP.
"""

import numpy as np
import open_clip
import torch
from modAL.models import ActiveLearner

from skpeal import CLIPAdapterClassifier
from skpeal.backbones import Backbone, list_backbones, register_backbone
from skpeal.datasets import load_digits_images
from skpeal.strategies import check_proba, class_balanced

# %%
# A new query strategy: the ratio of the two largest probabilities, ``p2 / p1`` (1 when
# the model cannot decide between its two best classes). Rules to follow: higher score =
# more informative, exactly ``n_instances`` unique indices, randomness only from
# ``random_state``, and always return two values (modAL misreads anything else).


def ratio_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    """Pick the pool rows with the largest ratio of second-best to best probability."""
    proba = check_proba(classifier.predict_proba(X_pool))  # one model pass over the pool
    top2 = np.sort(proba, axis=1)[:, -2:]
    scores = top2[:, 0] / top2[:, 1]
    rng = np.random.default_rng(random_state)
    order = np.lexsort((rng.random(len(scores)), -scores))  # highest first, ties at random
    indices = order[:n_instances]
    return indices, scores[indices]


# %%
# A new backbone. Any model with open_clip's interface works (``encode_image``,
# ``encode_text``, ``logit_scale``); here a small open_clip ``CLIP`` at 48 px. The factory
# must be deterministic: a pickled estimator stores only ``(model, pretrained)`` and calls
# the factory again when it is loaded.


def small_clip(pretrained):
    """A small CLIP: random weights from a fixed seed, or a safetensors file."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(0)
        model = open_clip.CLIP(
            embed_dim=32,
            vision_cfg=open_clip.CLIPVisionCfg(
                layers=2, width=48, head_width=16, patch_size=8, image_size=48
            ),
            text_cfg=open_clip.CLIPTextCfg(
                context_length=24, vocab_size=49408, width=32, heads=2, layers=1
            ),
        )
    if pretrained is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(pretrained))
    return Backbone(
        model=model,
        tokenizer=open_clip.SimpleTokenizer(context_length=24),  # ships inside open_clip
        image_size=48,
        mean=open_clip.OPENAI_DATASET_MEAN,
        std=open_clip.OPENAI_DATASET_STD,
    )


register_backbone("small-clip", small_clip)
print("'small-clip' is a known backbone:", "small-clip" in list_backbones())

# %%
# Use both: a model on the new backbone, the new strategy alone and under PCB class
# balancing.
data = load_digits_images()
X_pool, y_pool = data.X_train, data.y_train
seed = np.random.default_rng(0).choice(len(X_pool), size=20, replace=False)

clf = CLIPAdapterClassifier(
    model="small-clip",
    pretrained=None,
    classes=np.arange(10),
    classnames=data.classnames,
    n_ctx=4,
    max_epochs=5,
    random_state=0,
)
clf.fit(X_pool[seed], y_pool[seed])
idx, scores = ratio_sampling(clf, X_pool, n_instances=5, random_state=0)
print("ratio sampling picks", idx.tolist(), "scores", np.round(scores, 3).tolist())
idx, _ = class_balanced(ratio_sampling, gamma=0.1, random_state=0)(clf, X_pool, n_instances=5)
print("balanced picks", idx.tolist(), "predicted as", clf.predict(X_pool[idx]).tolist())

# %%
# ... and as a modAL query strategy: one round of query and teach.
learner = ActiveLearner(
    estimator=clf, query_strategy=ratio_sampling, X_training=X_pool[seed], y_training=y_pool[seed]
)
idx, X_query = learner.query(X_pool, n_instances=10)
learner.teach(X_query, y_pool[idx])
print(
    f"after one modAL round: {len(learner.y_training)} labels, "
    f"test accuracy {learner.score(data.X_test, data.y_test):.3f}"
)
