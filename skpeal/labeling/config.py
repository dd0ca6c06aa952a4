"""What ``skpeal label`` is given: :class:`LabelConfig`, and a project's default settings.

``skpeal label``'s options are built from :class:`LabelConfig`'s fields (as ``skpeal
run``'s from :class:`~skpeal.experiment.ExperimentConfig`): a field holds the option's
default, help and check, so adding an option is adding a field. The settings a project
remembers fall back to :class:`ProjectSettings`, which :class:`LabelingSession` reads too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

from .._fields import LiveNames, check_fields, option
from .._validation import check_choice, check_int, check_real

__all__ = ["BALANCE", "DEFAULT_STRATEGY", "INIT", "MODEL_FREE_INIT", "NEW_PROJECT_ESTIMATOR",
           "NEW_PROJECT_INIT", "LabelConfig", "ProjectSettings"]

#: The strategy of a project that never chose one.
DEFAULT_STRATEGY = "auto"

#: How the first batch may be picked (``init``): by the zero-shot model, at random, or
#: covering the images' pixels (TypiClust on a sample of them, shrunk).
INIT = ("zero-shot", "random", "pixels")

#: The ``init`` values that pick the first batch without a model (``skpeal label`` shows
#: it before torch and the model are loaded).
MODEL_FREE_INIT = ("random", "pixels")

#: The ``init`` of a new project of ``skpeal label``: its first batch in seconds, at a
#: cost of about 1 AULC point against the model's first batch on five image sets (see the
#: docs); a :class:`~skpeal.labeling.LabelingSession` made in Python keeps
#: ``ProjectSettings``'s.
NEW_PROJECT_INIT = "pixels"

#: Class balancing of the queries (``balance``): PCB, or none.
BALANCE = ("pcb", "none")

#: The estimator of a new project of ``skpeal label`` (the offline backbone, a short
#: prompt, AdamW): what ``--model``, ``--pretrained``, ``--epochs`` and ``--device``
#: override.
NEW_PROJECT_ESTIMATOR = dict(model="effnet-lite0-minilm", pretrained="default", device="auto",
                             max_epochs=10, n_ctx=4, optimizer="adamw", lr=0.01)


@dataclass(frozen=True)
class ProjectSettings:
    """The settings a labelling project remembers, with their defaults.

    Parameters
    ----------
    batch_size : int, default=10
        Images per batch.
    balance : {"pcb", "none"}, default="pcb"
        Class balancing of the queries.
    gamma : float, default=0.1
        PCB candidate fraction.
    init : {"zero-shot", "random", "pixels"}, default="zero-shot"
        How the first batch is picked: by the zero-shot model from the class names, at
        random, or covering the images' pixels (``skpeal label`` shows these two before
        the model is loaded).
    train_batch : {"labels", "estimator"}, default="labels"
        The training batch of every refit.
    random_state : int, default=0
        Seeds every round's fit and query.
    preselect_threshold : float, default=0.8
        Probability from which a suggestion is pre-selected on the page.
    """

    batch_size: int = 10
    balance: str = "pcb"
    gamma: float = 0.1
    init: str = "zero-shot"
    train_batch: str = "labels"
    random_state: int = 0
    preselect_threshold: float = 0.8


_SETTINGS = ProjectSettings()


def _project_or(setting):
    return f"the project's, else {getattr(_SETTINGS, setting)}"


def _new_project_or(param):
    return f"the project's, else {NEW_PROJECT_ESTIMATOR[param]}"


def _strategy_names():
    # imported when a strategy is named: the strategies import torch, and a restarted
    # ``skpeal label`` serves its pending batch before torch is loaded
    from ..strategies import strategy_names

    return strategy_names()


def _port(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a port number from 0 to 65535 (0: any free port), "
                         f"got {value!r}")
    return value


def _text(name, value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class LabelConfig:
    """Everything ``skpeal label`` is given (one command-line option per field).

    A field left None takes the project's value (a resumed project remembers its
    settings and backbone), else the default named in its help.

    Parameters
    ----------
    images : str
        Folder of images (searched recursively).
    classes : list of str or None, default=None
        The class names (a resumed project remembers them).
    project : str or None, default=None
        Project folder with the labels and models (None: ``IMAGES/.skpeal``).
    host : str, default="127.0.0.1"
        Address to listen on (any other host requires the access token in the URL).
    port : int, default=8000
        Port of the page (0: any free one).
    batch_size : int or None, default=None
        Images per batch (the project's, else :attr:`ProjectSettings.batch_size`).
    model : str or None, default=None
        Backbone name or path (the project's, else ``NEW_PROJECT_ESTIMATOR``'s).
    pretrained : str or None, default=None
        Weights: ``"default"``, an open_clip tag, a file, or ``"none"`` (random).
    epochs : int or None, default=None
        Training epochs per refit (the project's, else ``NEW_PROJECT_ESTIMATOR``'s).
    strategy : str or None, default=None
        A registered strategy (the project's, else :data:`DEFAULT_STRATEGY`).
    init : {"zero-shot", "random", "pixels"} or None, default=None
        How a new project's first batch is picked (the project's, else
        :data:`NEW_PROJECT_INIT` for a new project); ``"random"`` and ``"pixels"`` show
        it before the model is loaded.
    annotator : str or None, default=None
        Name stored with every label (None: the login name).
    preselect_threshold : float or None, default=None
        Pre-select a suggestion from this probability (the project's, else
        :attr:`ProjectSettings.preselect_threshold`; 1: never).
    device : str or None, default=None
        Device of the model (the project's, else ``NEW_PROJECT_ESTIMATOR``'s).
    ml_backend_port : int or None, default=None
        Also serve Label Studio's ML backend on this port (same host).
    ray : str or None, default=None
        Encode and score the pool on Ray: ``"local"``, ``"auto"`` or a cluster address.
    """

    images: str = option("folder of images (searched recursively)", positional=True)
    classes: list | None = option("the class names", None, nargs="+",
                                  fallback="the project's: a resumed project remembers them")
    project: str | None = option("project folder with the labels and models", None,
                                 fallback="IMAGES/.skpeal")
    host: str = option("address to listen on (any other host than 127.0.0.1 requires the "
                       "access token printed in the URL)", "127.0.0.1", check=_text)
    port: int = option("port (0: any free)", 8000, type=int, check=_port)
    batch_size: int | None = option("images per batch", None, type=int,
                                    check=partial(check_int, low=1),
                                    fallback=_project_or("batch_size"))
    model: str | None = option("backbone name or path; a project keeps its backbone", None,
                               fallback=_new_project_or("model"))
    pretrained: str | None = option(
        "'default' (the backbone's own weights), an open_clip tag, a weights file, or "
        "'none' (random weights)", None, fallback=_new_project_or("pretrained"))
    epochs: int | None = option("training epochs per refit", None, type=int,
                                check=partial(check_int, low=1),
                                fallback=_new_project_or("max_epochs"))
    strategy: str | None = option(
        "how the next batch is picked (auto: DropQuery for the first 10 labels per class, "
        "then margin with PCB; NAME: one of %(choices)s)", None,
        choices=LiveNames(_strategy_names), metavar="NAME",
        fallback=f"the project's, else {DEFAULT_STRATEGY}")
    init: str | None = option(
        "how a new project's first batch is picked: zero-shot (by the model from the class "
        "names, once it is loaded and the first images are encoded), random (drawn from "
        "every image) or pixels (typical images covering the looks of up to 1,000 images, "
        "shrunk to 16x16 pixels); random and pixels are shown at once, before the model "
        "loads; against the model's first batch, random cost 0.5-10 AULC points in our "
        "measurements, pixels 0.1-1.9: see the docs", None, choices=INIT,
        check=partial(check_choice, options=INIT),
        fallback=f"the project's, else {NEW_PROJECT_INIT} for a new project")
    annotator: str | None = option("name stored with every label", None, check=_text,
                                   fallback="the login name")
    preselect_threshold: float | None = option(
        "pre-select the model's suggestion when its probability is at least P (1: never)",
        None, type=float, metavar="P", check=partial(check_real, low=0.0, high=1.0),
        fallback=_project_or("preselect_threshold"))
    device: str | None = option("'auto', 'cpu', 'cuda' or 'cuda:N'", None,
                                fallback=_new_project_or("device"))
    ml_backend_port: int | None = option(
        "also serve Label Studio's ML backend on port N (same host; beyond 127.0.0.1 it "
        "needs basic auth: user skpeal, the access token)", None, type=int, metavar="N",
        check=_port, fallback="none")
    ray: str | None = option(
        "encode and score the pool on Ray: 'local' (start Ray here), 'auto' (the cluster of "
        "this machine) or host:port / ray://host:port; images and project must be at the "
        "same paths on every node", None, metavar="ADDRESS", check=_text,
        fallback="in this process")

    def validate(self, *, flags=False) -> LabelConfig:
        """Check every field.

        Parameters
        ----------
        flags : bool, default=False
            Name a bad value by its command-line flag (``--port``) instead of its field.

        Returns
        -------
        config : LabelConfig
            The config with checked, normalised values.

        Raises
        ------
        ValueError
            Naming the option and the bad value.
        """
        return dataclasses.replace(self, **check_fields(self, flags=flags))

    def estimator_params(self, stored=None) -> dict:
        """The estimator's parameters: the project's (or a new project's), flags on top.

        Parameters
        ----------
        stored : dict or None, default=None
            The parameters a project remembers (None: a new project).

        Returns
        -------
        params : dict
            For :class:`skpeal.CLIPAdapterClassifier`.
        """
        given = {k: v for k, v in (("model", self.model), ("max_epochs", self.epochs),
                                   ("device", self.device)) if v is not None}
        if self.pretrained is not None:  # "none" (any case): random weights
            given["pretrained"] = None if self.pretrained.lower() == "none" else self.pretrained
        base = NEW_PROJECT_ESTIMATOR if stored is None else stored
        return {**base, **given}

    def session_kwargs(self) -> dict:
        """The :class:`~skpeal.labeling.LabelingSession` keywords the config sets.

        Returns
        -------
        kwargs : dict
            ``classes``, ``batch_size``, ``init``, ``annotator``, ``preselect_threshold``,
            ``strategy`` (None: the project's, else the defaults) and ``ray``.
        """
        return dict(classes=self.classes, batch_size=self.batch_size, init=self.init,
                    annotator=self.annotator, preselect_threshold=self.preselect_threshold,
                    strategy=self.strategy, ray=self.ray)
