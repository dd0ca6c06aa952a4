"""What a fit needs, as frozen dataclasses built once in ``fit`` from validated params.

:class:`FitSpec` is what travels inward from :class:`~skpeal.CLIPAdapterClassifier`: the
backbone and class texts, the adapter (:class:`AdapterSpec`), the training recipe
(:class:`TrainSpec`) and how the model runs (:class:`RuntimeSpec`), plus the seed drawn
from ``random_state``. Defaults live only in the estimator's ``__init__``; nothing here
restates them. A fitted estimator keeps its spec, so predictions, pickling, saving and
warm starts read the same values the fit used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch

__all__ = ["STRUCTURAL", "AdapterSpec", "FitSpec", "RuntimeSpec", "TrainSpec"]

#: Estimator parameters that determine the shape of the adapted network: what a saved
#: adapter must match, and what a warm start compares.
STRUCTURAL = (
    "model", "pretrained", "adapter", "n_ctx", "ctx_init", "class_specific",
    "class_token_position", "lora_r", "lora_alpha", "lora_towers", "lora_targets", "templates",
    "adapter_params",
)


@dataclass(frozen=True)
class AdapterSpec:
    """The trained adapter: ``kind`` (a kind registered in :mod:`skpeal.adapters`:
    ``"prompt"``, ``"lora"``, ``"prompt+lora"``, ...), the parameters of the built-in
    parts, and ``adapter_params`` (the options of other parts, defaults filled in).
    The kind's record (``skpeal.adapters.adapter_kind``) turns these into build
    keywords."""

    kind: str
    n_ctx: int
    ctx_init: str | None
    class_specific: bool
    class_token_position: str
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    lora_towers: str
    lora_targets: object
    adapter_params: Mapping | None = None  # None in specs pickled before it existed


@dataclass(frozen=True)
class TrainSpec:
    """The training recipe: epochs, optimiser, schedule, loss, augmentation."""

    max_epochs: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    warmup_epochs: int
    augment: bool
    augment_views: int
    augment_scale: tuple
    calibration: str | None
    calibration_beta: float
    calibration_weight: float
    calibration_warmup: float


@dataclass(frozen=True)
class RuntimeSpec:
    """Where and how the model runs; none of it changes results."""

    device: torch.device
    precision: str
    predict_batch_size: int | str
    num_workers: int | None
    feature_cache: bool


@dataclass(frozen=True)
class FitSpec:
    """Everything one fit uses (see the module docstring)."""

    model: object
    pretrained: object
    templates: tuple
    classnames: tuple
    adapter: AdapterSpec
    train: TrainSpec
    runtime: RuntimeSpec
    seed: int
    warm_start: bool
    verbose: int

    @classmethod
    def from_params(cls, p: Mapping, *, seed: int, classnames) -> FitSpec:
        """Build from validated estimator params (``get_params()`` names)."""
        return cls(
            model=p["model"],
            pretrained=p["pretrained"],
            templates=tuple(p["templates"]),
            classnames=tuple(classnames),
            adapter=AdapterSpec(**{
                "kind": p["adapter"],
                **{f.name: p.get(f.name) for f in dataclasses.fields(AdapterSpec)[1:]},
            }),
            train=TrainSpec(**{f.name: p[f.name] for f in dataclasses.fields(TrainSpec)}),
            runtime=RuntimeSpec(**{f.name: p[f.name] for f in dataclasses.fields(RuntimeSpec)}),
            seed=int(seed),
            warm_start=bool(p["warm_start"]),
            verbose=int(p["verbose"]),
        )

    def structure(self) -> dict:
        """The :data:`STRUCTURAL` parameters as JSON-ready values (tuples as lists)."""
        a = self.adapter
        values = dict(
            model=self.model, pretrained=self.pretrained, adapter=a.kind, n_ctx=a.n_ctx,
            ctx_init=a.ctx_init, class_specific=a.class_specific,
            class_token_position=a.class_token_position, lora_r=a.lora_r,
            lora_alpha=a.lora_alpha, lora_towers=a.lora_towers, lora_targets=a.lora_targets,
            templates=self.templates, adapter_params=dict(a.adapter_params or {}),
        )
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}

    def on_device(self, device: torch.device) -> FitSpec:
        """The same spec with another device."""
        return dataclasses.replace(self, runtime=dataclasses.replace(self.runtime, device=device))
