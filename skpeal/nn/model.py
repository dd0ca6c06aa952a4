"""The torch module behind the estimator: a frozen backbone plus its adapter."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import AdapterContext, adapter_kind, frozen_towers
from ..adapters._registry import _PARTS
from ..backbones import Backbone
from .inference import clear_text_cache

__all__ = ["AdaptedCLIP"]


class AdaptedCLIP(nn.Module):
    """A backbone, its adapter (prompt, LoRA, both, or any registered kind), the class texts.

    Parameters
    ----------
    backbone : Backbone
    classnames : list of str
    templates : list of str
        Each with one ``{}``; used for zero-shot scores and by the LoRA adapter.
    adapter : str
        A kind of :mod:`skpeal.adapters` (``"prompt"``, ``"lora"``, ``"prompt+lora"``, or
        one registered with :func:`~skpeal.adapters.register_adapter`).
    params : mapping
        Estimator-named parameters of its parts (an ``AdapterSpec`` or a dict: ``n_ctx``,
        ``lora_r``, ..., ``adapter_params``), turned into each part's build keywords by
        the kind's record.
    generator : torch.Generator
        Source of the parts' random initialisation (LoRA initialises from the global
        RNG, which the caller forks and seeds).

    Attributes
    ----------
    peft, prompt : torch.nn.Module or None
        The LoRA (peft model) and prompt parts, None when the kind has not them; every
        registered part has such an attribute (:attr:`AdapterPart.attribute`).
    vision_frozen, text_frozen : bool
        Whether the image / text tower's output is independent of the adapter.
    """

    def __init__(self, backbone: Backbone, classnames, templates, adapter, params, generator):
        super().__init__()
        self.adapter = adapter
        self.tokenizer = backbone.tokenizer
        self.zero_shot = True  # until trained: scores use the templates
        tokens = backbone.tokenizer([t.format(c) for c in classnames for t in templates])
        self.register_buffer("template_tokens", tokens, persistent=False)
        self.n_classes, self.n_templates = len(classnames), len(templates)
        kind = adapter_kind(adapter)
        for part in _PARTS.values():
            setattr(self, part.attribute, None)
        context = AdapterContext(backbone, backbone.model, list(classnames), list(templates),
                                 generator)
        self._parts = []
        for part in kind.records():
            if not part.wraps_backbone and "clip" not in self._modules:
                # parts that wrap the backbone come first (peft freezes every parameter
                # it finds in the model); their tensors are named under them
                self.clip = backbone.model
            module = part.build(context, **part.kwargs(params))
            setattr(self, part.attribute, module)
            self._parts.append((part, module))
        if "clip" not in self._modules:
            self.clip = backbone.model
        self.vision_frozen, self.text_frozen = frozen_towers(kind, params=params)
        self.freeze_eval()

    # -- modes -----------------------------------------------------------------------
    def freeze_eval(self):
        """Everything in eval mode (frozen BatchNorm statistics, no dropout)."""
        self.eval()
        return self

    def adapter_train(self):
        """Train mode for the adapter only: LoRA dropout active, backbone stays in eval."""
        self.eval()
        for name, m in self.named_modules():
            if "lora_dropout" in name:
                m.train()
        return self

    # -- parameters --------------------------------------------------------------------
    def adapter_parameters(self) -> list[nn.Parameter]:
        """The trainable tensors (context vectors or LoRA weights)."""
        return [p for p in self.parameters() if p.requires_grad]

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Adapter tensors only, detached, on the CPU."""
        return {
            n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad
        }

    def load_adapter_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors saved by :meth:`adapter_state_dict` (names and shapes must match)."""
        clear_text_cache(self)
        own = {n: p for n, p in self.named_parameters() if p.requires_grad}
        if set(own) != set(state):
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise ValueError(
                f"adapter weights do not fit this model: missing {missing[:3]}, "
                f"unexpected {extra[:3]}"
            )
        with torch.no_grad():
            for n, p in own.items():
                if p.shape != state[n].shape:
                    raise ValueError(
                        f"adapter tensor {n!r} has shape {tuple(state[n].shape)}, "
                        f"expected {tuple(p.shape)}"
                    )
                p.copy_(state[n].to(p.device, p.dtype))

    # -- features ----------------------------------------------------------------------
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features (float32)."""
        return F.normalize(self.clip.encode_image(images).float(), dim=-1)

    def template_features(self) -> torch.Tensor:
        """Zero-shot class features: the normalised mean over templates."""
        f = F.normalize(self.clip.encode_text(self.template_tokens).float(), dim=-1)
        f = f.view(self.n_classes, self.n_templates, -1).mean(dim=1)
        return F.normalize(f, dim=-1)

    def text_features(self) -> torch.Tensor:
        """L2-normalised class features ``(n_classes, d)`` of the current adapter."""
        if not self.zero_shot:
            for _, module in self._parts:
                if hasattr(module, "class_features"):
                    return F.normalize(module.class_features().float(), dim=-1)
        return self.template_features()

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities (plus the backbone's logit bias, if it has one).

        Parts with ``adapt_image_features`` (a head on the features) are applied first.
        """
        for _, module in self._parts:
            if hasattr(module, "adapt_image_features"):
                image_features = module.adapt_image_features(image_features)
        z = self.clip.logit_scale.exp().float() * image_features @ text_features.t()
        bias = getattr(self.clip, "logit_bias", None)
        return z + bias.float() if bias is not None else z

    @contextlib.contextmanager
    def merged(self):
        """Context manager in which inference runs: each part's ``merge`` (see
        :class:`~skpeal.adapters.AdapterPart`), e.g. LoRA weights merged into the base
        layers (and the original weights restored exactly on exit). Yields what the merging
        part's context gives (a tuple of them when several parts merge, or none)."""
        with contextlib.ExitStack() as stack:
            entered = tuple(stack.enter_context(part.merge(module))
                            for part, module in self._parts if part.merge is not None)
            yield entered[0] if len(entered) == 1 else entered
