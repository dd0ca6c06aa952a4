"""Label your own images: an active-learning session with a person (or a script) as oracle.

* :class:`LabelingSession` (:mod:`skpeal.labeling.session`): the loop, over a project
  folder: next batch with the model's suggestions, label / skip / undo, refit, status,
  exports (CSV, image folders, the adapter).
* :class:`ActiveLearningLoop` (:mod:`skpeal.labeling.loop`): the round logic the session
  and ``skpeal run`` share (each round's model, scoring, queries, seeds); ``skpeal run``
  is this loop with a simulated oracle reading the hidden labels.
* :class:`LabelStore` (:mod:`skpeal.labeling.store`): the SQLite label store (schema in
  its docstring).
* :mod:`skpeal.labeling.app`: the web app behind ``skpeal label`` (needs the ``label``
  extra: FastAPI and uvicorn); only that module imports the web stack.
* :mod:`skpeal.labeling.labelstudio`: Label Studio interop (task export, label import,
  the ML backend protocol; the server part needs the ``label`` extra).

``import skpeal.labeling`` (and of its store and web app) imports neither torch nor
open_clip: the names above are imported on first access, so that a restarted
``skpeal label`` serves its pending batch before the model is loaded.
"""

import importlib
from typing import TYPE_CHECKING

__all__ = ["ActiveLearningLoop", "LabelStore", "LabelingSession", "PoolScores",
           "collect_images"]

#: Where each lazily imported name lives.
_HOMES = {"ActiveLearningLoop": "loop", "PoolScores": "loop", "LabelingSession": "session",
          "collect_images": "_project", "LabelStore": "store"}

if TYPE_CHECKING:  # what IDEs and type checkers see
    from ._project import collect_images
    from .loop import ActiveLearningLoop, PoolScores
    from .session import LabelingSession
    from .store import LabelStore


def __getattr__(name):
    # Lazy so that the store and the web app start without torch (a restart within seconds).
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'skpeal.labeling' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
