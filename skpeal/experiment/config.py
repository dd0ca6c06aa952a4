"""What defines an active-learning run: :class:`ExperimentConfig` and the strategy names."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import partial

from .. import strategies as _st
from .._fields import LiveNames, check_fields, option
from .._validation import InvalidParameterError, check_choice, check_int, check_real
from ..adapters import adapter_names
from ..estimator import CLIPAdapterClassifier
from ..labeling.config import BALANCE, INIT
from ..losses import CALIBRATION_MODES

__all__ = ["STRATEGIES", "ExperimentConfig"]

#: Base strategy names, a live view ``{name: query function}`` of the strategy registry
#: (:func:`skpeal.strategies.register_strategy` adds to it); each also exists as
#: ``"calibrated-<name>"`` (trained with the calibration loss). ``"linear-probe"`` is a
#: logistic regression on standardised frozen image features with least-confidence
#: sampling (see :mod:`skpeal.experiment.baselines`).
STRATEGIES = _st.QueryTable()
LINEAR_PROBE = "linear-probe"


def _known_strategies():
    return sorted({*STRATEGIES, *(f"calibrated-{s}" for s in STRATEGIES), LINEAR_PROBE})


def _choice(name, value, options):
    return check_choice(name, value, options)


def _text(name, value):
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameterError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_strategies(name, value):
    if not value:
        raise InvalidParameterError(f"{name}: give at least one strategy")
    known = _known_strategies()
    unknown = [s for s in value if s not in known]
    if unknown:
        raise InvalidParameterError(f"unknown strategy {unknown[0]!r}; choose from {known}")
    if len(set(value)) != len(value):
        raise InvalidParameterError(f"{name}: a strategy is listed twice")
    return value


def _check_seeds(name, value):
    if not value:
        raise InvalidParameterError(f"{name}: give at least one seed")
    return [check_int(name, s, 0) for s in value]


@dataclass
class ExperimentConfig:
    """Everything that defines an active-learning run (and so its results).

    Parameters
    ----------
    data : str, default="fashion-mnist"
        ``"fashion-mnist"``, ``"digits"``, or a folder of images with one sub-folder per
        class (optionally under ``train/`` and ``test/``).
    strategies : list of str, default=["random", "entropy", "calibrated-entropy"]
        Names from :data:`STRATEGIES`, their ``"calibrated-"`` forms, or
        ``"linear-probe"``.
    model : str, default="effnet-lite0-minilm"
        The backbone (see :class:`skpeal.CLIPAdapterClassifier`).
    pretrained : str or None, default="default"
        The backbone's weights: ``"default"`` for the backbone's own (OpenAI's for OpenAI
        CLIP names, the package-shipped ones of the offline backbone), an open_clip tag,
        a weights file, or None for random weights (see
        :class:`skpeal.CLIPAdapterClassifier`). On the command line, ``none`` is None.
    adapter : {"prompt", "lora", "prompt+lora"}, default="prompt"
        The adapter trained every round (``"prompt+lora"``: both trained together).
    rounds : int, default=8
        Number of rounds, round 0 included (>= 1).
    budget : int or None, default=None
        Images labelled per round; None means the number of classes.
    gamma : float, default=0.1
        Candidate fraction of PCB class balancing, in (0, 1].
    balance : {"pcb", "none"}, default="pcb"
        Whether the queries of model-driven strategies (uncertainty, BADGE, coreset,
        featdist) go through :func:`skpeal.strategies.class_balanced` (PCB).
        ``"random"`` is never balanced (it would follow the model's pseudo-labels, unlike
        random sampling in the authors' code), nor are the low-budget strategies
        (``typiclust``, ``probcover``, ``maxherding``, ``uherding``, ``dropquery``, ``classguided``,
        ``auto``: see :mod:`skpeal.strategies.lowbudget`), which cover or balance by themselves.
        A strategy and its ``"calibrated-"`` form use the same query seed in a round, so
        their draws and tie-breaks are paired.
    seeds : list of int, default=[0]
        One independent run per seed.
    pool_size : int or None, default=None
        Seeded, class-stratified subsample of the train split (None keeps all).
    test_size : int or None, default=None
        Seeded, class-stratified subsample of the test split (None keeps all).
    data_seed : int, default=0
        Seed of those subsamples and of the train/test split of a folder without one;
        the same for every strategy and seed, so they see the same pool.
    init : {"random", "zero-shot", "pixels"}, default="random"
        Round 0: random images, the strategy applied to the zero-shot model, or images
        covering the pool's pixels (:func:`skpeal.labeling._project.first_rows`). Round 0
        is random for strategies that need labelled images to compare with (coreset,
        featdist) and for the linear probe (it has no zero-shot model).
    warm_start : bool, default=False
        Start each round's adapter from the previous round's (the paper starts afresh).
    calibration : {"balanced", "sum", "effective"}, default="balanced"
        Loss combination used by the ``calibrated-`` strategies.
    calibration_weight : float, default=1.0
        Weight of the calibration term of the ``calibrated-`` strategies.
    estimator_params : dict, default={}
        Further :class:`skpeal.CLIPAdapterClassifier` parameters (``max_epochs``,
        ``lr``, ``n_ctx``, ``batch_size``, ...).
    """

    data: str = option("'fashion-mnist', 'digits', or a folder with one sub-folder per class",
                       "fashion-mnist", required=True, check=_text)
    strategies: list = option(
        lambda: "one or more of " + ", ".join(_known_strategies()),
        default_factory=lambda: ["random", "entropy", "calibrated-entropy"], nargs="+",
        metavar="NAME", check=_check_strategies)
    model: str = option("backbone name or path", "effnet-lite0-minilm", check=_text)
    pretrained: str | None = option(
        "'default' (the backbone's own weights), an open_clip tag, a weights file, or "
        "'none' (random weights)", "default")
    adapter: str = option("the adapter: one of %(choices)s", "prompt",
                          choices=LiveNames(adapter_names),
                          check=lambda name, v: check_choice(name, v, adapter_names()))
    rounds: int = option("rounds, round 0 included", 8, type=int,
                         check=partial(check_int, low=1))
    budget: int | None = option("labels per round", None, type=int,
                                check=partial(check_int, low=1),
                                fallback="the number of classes")
    gamma: float = option("PCB candidate fraction", 0.1, type=float,
                          check=partial(check_real, low=0.0, high=1.0, closed="right"))
    balance: str = option("class balancing", "pcb", choices=BALANCE,
                          check=partial(_choice, options=BALANCE))
    seeds: list = option("one run per seed", default_factory=lambda: [0], type=int, nargs="+",
                         check=_check_seeds)
    pool_size: int | None = option("subsample the pool (seeded, stratified)", None, type=int,
                                   check=partial(check_int, low=1), fallback="all")
    test_size: int | None = option("subsample the test set (seeded, stratified)", None,
                                   type=int, check=partial(check_int, low=1), fallback="all")
    data_seed: int = option("seed of the subsamples", 0, type=int,
                            check=partial(check_int, low=0))
    init: str = option("how round 0 is chosen", "random", choices=INIT,
                       check=partial(_choice, options=INIT))
    warm_start: bool = option("start each round from the previous adapter", False)
    calibration: str = option("loss of the calibrated-* strategies", "balanced",
                              choices=CALIBRATION_MODES,
                              check=partial(_choice, options=CALIBRATION_MODES))
    calibration_weight: float = option("calibration weight of the calibrated-* strategies",
                                       1.0, type=float, check=partial(check_real, low=0.0))
    estimator_params: dict = field(default_factory=dict)

    def validate(self, *, flags=False) -> ExperimentConfig:
        """Check every field (each field's own check, then the estimator's parameters).

        Parameters
        ----------
        flags : bool, default=False
            Name a bad value by its command-line flag (``--rounds``) instead of its field.

        Returns
        -------
        self : ExperimentConfig
            The same config, checked.

        Raises
        ------
        ValueError
            Naming the first bad field.
        """
        check_fields(self, flags=flags)
        try:  # fail now, not after the data is loaded and round 0 has run
            CLIPAdapterClassifier(**self.estimator_params)._validated_params()
        except TypeError as exc:  # an unknown name, or a bad value
            raise InvalidParameterError(f"estimator_params: {exc}") from None
        return self

    def to_dict(self) -> dict:
        """The fields as JSON values.

        Returns
        -------
        fields : dict
            What ``config.json`` of a run holds.
        """
        return json.loads(json.dumps(dataclasses.asdict(self)))
