"""Label Studio interop: tasks out, labels in, and Label Studio's ML backend protocol.

Three ways to work with a team that labels in `Label Studio <https://labelstud.io>`_:

* **Export** images, the model's suggestions and the labels given so far as Label
  Studio's JSON task format (:func:`export_tasks`; the matching labelling interface is
  :func:`labeling_config`). Each task's ``data`` holds the image (``data["image"]``) and
  the image's id (``data["skpeal_id"]``); ``predictions`` hold the suggestion as a
  ``choices`` result with ``model_version`` and ``score`` (the model's probability of its
  suggestion: sort the Data Manager by "Prediction score", lowest first, to label the most
  uncertain images first); ``annotations`` hold labels already given.
* **Import** the labels of a Label Studio JSON export (:func:`import_labels`): the latest
  annotation of each task wins, cancelled (skipped) annotations are ignored, a label
  outside the class list is an error naming the task.
* **Serve** Label Studio's ML backend protocol (:func:`ml_backend_app`,
  :func:`ml_backend_router`): ``GET /health``, ``POST /setup``, ``POST /predict`` (a
  pre-annotation per task) and ``POST /webhook`` (new annotations), over any *predictor*
  (see :func:`ml_backend_router`). Needs the ``label`` extra (FastAPI); the export and
  import functions need only the standard library.

One module per job: :mod:`~skpeal.labeling.labelstudio.config` (the labelling config),
:mod:`~skpeal.labeling.labelstudio.tasks` (task export, label import),
:mod:`~skpeal.labeling.labelstudio.backend` (the ML backend server) and
:mod:`~skpeal.labeling.labelstudio.bridge` (a labelling session in all three).

The request and response shapes follow Label Studio's ML backend (the
``label-studio-ml-backend`` package's ``api.py``, and Label Studio's
``ml/api_connector.py`` that calls it).
"""

from .backend import PredictorNotReady, TaskImage, ml_backend_app, ml_backend_router
from .bridge import SessionBackend, export_session, import_session, local_files_settings
from .config import LabelingInterface, labeling_config, parse_labeling_config
from .tasks import ID_KEY, ImportedLabel, export_tasks, import_labels, local_files_url

__all__ = [
    "ID_KEY",
    "ImportedLabel",
    "LabelingInterface",
    "PredictorNotReady",
    "SessionBackend",
    "TaskImage",
    "export_session",
    "export_tasks",
    "import_labels",
    "import_session",
    "labeling_config",
    "local_files_settings",
    "local_files_url",
    "ml_backend_app",
    "ml_backend_router",
    "parse_labeling_config",
]
