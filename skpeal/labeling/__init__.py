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
"""

from .loop import ActiveLearningLoop, PoolScores
from .session import LabelingSession, collect_images
from .store import LabelStore

__all__ = ["ActiveLearningLoop", "LabelStore", "LabelingSession", "PoolScores",
           "collect_images"]
