"""The torch module behind the estimator: a frozen backbone plus its adapter."""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .._adapter_kinds import PARTS, adapter_kind, frozen_towers
from ..adapters import PromptLearner, attach_lora, text_encoder_for
from ..backbones import Backbone

__all__ = ["AdaptedCLIP"]

_LORA_KEYS = tuple(PARTS["lora"])


class AdaptedCLIP(nn.Module):
    """A backbone, its adapter (prompt, LoRA, or both), and the class texts.

    Parameters
    ----------
    backbone : Backbone
    classnames : list of str
    templates : list of str
        Each with one ``{}``; used for zero-shot scores and by the LoRA adapter.
    adapter : str
        A kind of :mod:`skpeal._adapter_kinds` (``"prompt"``, ``"lora"``,
        ``"prompt+lora"``).
    adapter_kw : dict
        The constructor keywords of its parts (:meth:`AdapterKind.module_kwargs`): for
        the prompt n_ctx, ctx_init, class_specific, class_token_position; for LoRA r,
        alpha, dropout, towers, targets (with both, the context vectors feed the
        LoRA-adapted text tower).
    generator : torch.Generator
        Source of the prompt initialisation (LoRA initialises from the global RNG,
        which the caller forks and seeds).
    """

    def __init__(self, backbone: Backbone, classnames, templates, adapter, adapter_kw, generator):
        super().__init__()
        self.adapter = adapter
        self.tokenizer = backbone.tokenizer
        self.zero_shot = True  # until trained: scores use the templates
        tokens = backbone.tokenizer([t.format(c) for c in classnames for t in templates])
        self.register_buffer("template_tokens", tokens, persistent=False)
        self.n_classes, self.n_templates = len(classnames), len(templates)
        lora_kw = {k: v for k, v in adapter_kw.items() if k in _LORA_KEYS}
        prompt_kw = {k: v for k, v in adapter_kw.items() if k not in _LORA_KEYS}
        kind = adapter_kind(adapter)
        self.peft = None
        if kind.has("lora"):
            self.peft = attach_lora(backbone.model, defaults=backbone.lora_targets, **lora_kw)
            self.clip = self.peft.get_base_model()
        else:
            self.clip = backbone.model
        self.prompt = None
        if kind.has("prompt"):
            # after attach_lora: peft freezes every parameter it finds in the model
            self.prompt = PromptLearner(
                text_encoder_for(self.clip),
                backbone.tokenizer,
                classnames,
                generator=generator,
                **prompt_kw,
            )
        self.vision_frozen, self.text_frozen = frozen_towers(kind, lora_kw.get("towers",
                                                                                 "both"))
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
        if self.prompt is not None and not self.zero_shot:
            return F.normalize(self.prompt().float(), dim=-1)
        return self.template_features()

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities (plus the backbone's logit bias, if it has one)."""
        z = self.clip.logit_scale.exp().float() * image_features @ text_features.t()
        bias = getattr(self.clip, "logit_bias", None)
        return z + bias.float() if bias is not None else z

    def merged(self):
        """Context manager: LoRA weights merged into the base layers for inference.

        A merged layer runs one matrix product instead of the base product plus the
        low-rank one (and peft's ``nn.MultiheadAttention`` wrapper no longer merges and
        unmerges inside every forward). The merge writes into copies of the base weights,
        which may be shared with other models; on exit the original tensors are put back
        (bit for bit; an unmerge alone leaves float rounding behind). Merging is skipped,
        and the unmerged layers used, when a base weight is not float32/float64 (merging
        into low precision would round the adapter away) or for the prompt adapter.
        """
        return _Merged(self.peft)


class _Merged:
    def __init__(self, peft_model):
        self.peft_model = peft_model
        self.saved = None

    def __enter__(self):
        if self.peft_model is None:
            return self
        base = {n: p for n, p in self.peft_model.named_parameters() if ".base_layer." in n}
        if not base or any(p.dtype not in (torch.float32, torch.float64) for p in base.values()):
            return self
        with torch.no_grad(), _quiet_peft():
            # merge into private copies: the base tensors may be shared with other models
            # (load_backbone(shared=True)), so they are never written to; restored on exit
            self.saved = {n: p.data for n, p in base.items()}
            for p in base.values():
                p.data = p.data.clone()
            self.peft_model.merge_adapter()
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            with torch.no_grad(), _quiet_peft():
                self.peft_model.unmerge_adapter()
                for n, p in self.peft_model.named_parameters():
                    if n in self.saved:
                        p.data = self.saved[n]
            self.saved = None
        return False


@contextlib.contextmanager
def _quiet_peft():
    """Silence peft's notes that a MultiheadAttention's out_proj was (un)merged with it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All adapters are already merged")
        warnings.filterwarnings("ignore", message="Already unmerged")
        yield
