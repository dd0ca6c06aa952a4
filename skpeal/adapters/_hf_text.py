"""Prompt tuning on a Hugging Face text tower (open_clip's ``HFTextEncoder``).

open_clip's native text transformer and a Hugging Face tower (e.g. the BERT of the
offline ``"effnet-lite0-minilm"`` backbone) embed tokens differently; this module gives the
Hugging Face tower the same small *text encoder* interface as the native one (see
:mod:`skpeal.adapters.prompt`), so the CoOp learner needs no other code path:

* token ids -> input embeddings with the model's own embedding table;
* input embeddings (some of them learned context vectors) -> the transformer through
  ``inputs_embeds`` (position and token-type embeddings, LayerNorm, the attention mask
  ``tokens != pad``), then the tower's pooler and projection, exactly as
  ``HFTextEncoder.forward`` does from token ids.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HFTextPromptEncoder"]


class HFTextPromptEncoder:
    """Text-encoder interface over a ``CustomTextCLIP`` whose text tower is Hugging Face.

    Parameters
    ----------
    model : torch.nn.Module
        An open_clip ``CustomTextCLIP`` (or anything with ``model.text`` an open_clip
        ``HFTextEncoder``: ``transformer``, ``config``, ``pooler``, ``proj``).

    Attributes
    ----------
    width : int
        Width of the token embeddings (384 for MiniLM).
    ctx_start : int
        First position that learned context replaces: 1, right after ``[CLS]``.
    pad_token_id : int
        Id of the padding token; the attention mask is ``tokens != pad_token_id``.
    """

    ctx_start = 1
    _MASKED_POOLERS = ("MeanPooler", "ClsPooler", "ClsLastHiddenStatePooler")

    def __init__(self, model: nn.Module):
        text = getattr(model, "text", None)
        if text is None or not all(hasattr(text, a) for a in ("transformer", "config", "pooler")):
            raise TypeError(
                f"{type(model).__name__} has no Hugging Face text tower (model.text with "
                "transformer, config and pooler)"
            )
        self.model = model
        self.text = text
        self.pad_token_id = int(getattr(text.config, "pad_token_id", 0) or 0)
        self.width = int(text.transformer.get_input_embeddings().weight.shape[1])

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``(n, L, width)`` of token ids ``(n, L)``."""
        return self.text.transformer.get_input_embeddings()(tokens)

    def needed_length(self, tokens: torch.Tensor) -> int | None:
        """Positions that determine the features: up to the last non-padding token.

        Padding is masked out of attention and out of mean or CLS pooling, and position
        embeddings are absolute, so trailing padding changes nothing; for other poolers
        (which may read padded positions) None: keep every position.
        """
        if type(self.text.pooler).__name__ not in self._MASKED_POOLERS:
            return None
        nonpad = (tokens != self.pad_token_id).any(dim=0).nonzero()
        return int(nonpad.max()) + 1 if len(nonpad) else None

    def encode(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Text features ``(n, embed_dim)``, not normalised.

        Parameters
        ----------
        embeddings : torch.Tensor of shape (n, L, width)
            Input embeddings: those of ``tokens`` with some positions replaced.
        tokens : torch.LongTensor of shape (n, L)
            The token ids the embeddings stand for; they give the attention mask and the
            pooling positions.

        Returns
        -------
        features : torch.Tensor of shape (n, embed_dim)
            Equal to ``model.encode_text(tokens)`` when
            ``embeddings == token_embeddings(tokens)``.
        """
        text = self.text
        mask = (tokens != self.pad_token_id).long()
        out = text.transformer(inputs_embeds=embeddings, attention_mask=mask)
        pooled = text.pooler(out, mask)
        return text.proj(pooled)
