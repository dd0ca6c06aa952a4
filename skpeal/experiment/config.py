"""What defines an active-learning run: :class:`ExperimentConfig` and the strategy names."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from .. import strategies as _st
from .._validation import InvalidParameterError, check_choice, check_int, check_real
from ..adapters import adapter_names
from ..estimator import CLIPAdapterClassifier
from ..losses import CALIBRATION_MODES

__all__ = ["STRATEGIES", "ExperimentConfig"]

#: Base strategy names, a live view ``{name: query function}`` of the strategy registry
#: (:func:`skpeal.strategies.register_strategy` adds to it); each also exists as
#: ``"calibrated-<name>"`` (trained with the calibration loss). ``"linear-probe"`` is a
#: logistic regression on standardised frozen image features with least-confidence
#: sampling (see :mod:`skpeal.experiment.baselines`).
STRATEGIES = _st.QueryTable()
LINEAR_PROBE = "linear-probe"
ADAPTERS = adapter_names()
BALANCE = ("pcb", "none")
INIT = ("random", "zero-shot")


def _known_strategies():
    return sorted({*STRATEGIES, *(f"calibrated-{s}" for s in STRATEGIES), LINEAR_PROBE})


def _opt(help, **cli):
    """Field metadata: the command line's help text and argparse options."""
    return {"help": help, "cli": cli}


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
        (``typiclust``, ``probcover``, ``maxherding``, ``dropquery``, ``classguided``,
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
    init : {"random", "zero-shot"}, default="random"
        Round 0: random images, or the strategy applied to the zero-shot model. Round 0
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

    data: str = field(default="fashion-mnist", metadata=_opt(
        "'fashion-mnist', 'digits', or a folder with one sub-folder per class",
        required=True))
    strategies: list = field(
        default_factory=lambda: ["random", "entropy", "calibrated-entropy"],
        metadata=_opt("e.g. auto random entropy calibrated-entropy margin badge coreset "
                      "featdist typiclust probcover maxherding dropquery classguided "
                      "linear-probe", nargs="+"))
    model: str = field(default="effnet-lite0-minilm", metadata=_opt("backbone name or path"))
    pretrained: str | None = field(default="default", metadata=_opt(
        "'default' (the backbone's own weights), an open_clip tag, a weights file, or "
        "'none' (random weights)"))
    adapter: str = field(default="prompt", metadata=_opt("the adapter", choices=ADAPTERS))
    rounds: int = field(default=8, metadata=_opt("rounds, round 0 included", type=int))
    budget: int | None = field(default=None, metadata=_opt(
        "labels per round (None: the number of classes)", type=int))
    gamma: float = field(default=0.1, metadata=_opt("PCB candidate fraction", type=float))
    balance: str = field(default="pcb", metadata=_opt("class balancing", choices=BALANCE))
    seeds: list = field(default_factory=lambda: [0], metadata=_opt(
        "one run per seed", type=int, nargs="+"))
    pool_size: int | None = field(default=None, metadata=_opt(
        "subsample the pool (seeded, stratified)", type=int))
    test_size: int | None = field(default=None, metadata=_opt(
        "subsample the test set (seeded, stratified)", type=int))
    data_seed: int = field(default=0, metadata=_opt("seed of the subsamples", type=int))
    init: str = field(default="random", metadata=_opt("how round 0 is chosen", choices=INIT))
    warm_start: bool = field(default=False, metadata=_opt(
        "start each round from the previous adapter"))
    calibration: str = field(default="balanced", metadata=_opt(
        "loss of the calibrated-* strategies", choices=CALIBRATION_MODES))
    calibration_weight: float = field(default=1.0, metadata=_opt(
        "calibration weight of the calibrated-* strategies", type=float))
    estimator_params: dict = field(default_factory=dict)

    def validate(self) -> ExperimentConfig:
        """Check every field.

        Returns
        -------
        self : ExperimentConfig
            The same config, checked.

        Raises
        ------
        ValueError
            Naming the first bad field.
        """
        known = _known_strategies()
        if not self.strategies:
            raise InvalidParameterError("strategies: give at least one strategy")
        unknown = [s for s in self.strategies if s not in known]
        if unknown:
            raise InvalidParameterError(f"unknown strategy {unknown[0]!r}; choose from {known}")
        if len(set(self.strategies)) != len(self.strategies):
            raise InvalidParameterError("strategies: a strategy is listed twice")
        check_int("rounds", self.rounds, 1)
        if self.budget is not None:
            check_int("budget", self.budget, 1)
        check_real("gamma", self.gamma, 0.0, 1.0, closed="right")
        check_choice("balance", self.balance, BALANCE)
        check_choice("init", self.init, INIT)
        check_choice("adapter", self.adapter, adapter_names())
        if not self.seeds:
            raise InvalidParameterError("seeds: give at least one seed")
        for s in self.seeds:
            check_int("seeds", s, 0)
        for name in ("pool_size", "test_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
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
