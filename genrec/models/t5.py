"""TIGER-style encoder-decoder recommender: ``T5ForConditionalGeneration`` on SID tokens.

Encoder input: the user's history as SID tokens (oldest first, optional user token in front),
ending with ``</s>``. Decoder target: the next item's ``D`` SID tokens (no eos: every SID has the
same length, so decoding runs exactly ``D`` steps). The decoder starts from ``<pad>`` (id 0).

``T5RecConfig.encoder="causal"`` builds :class:`CausalEncoderT5`: the same T5 whose encoder lets
each position attend only to itself and earlier positions, and whose prompts have no ``</s>``
(they end with the last history item). Its encoder states for a history prefix do not depend on
later items, so one forward pass over a user's window trains every item of it as a target
(``train_targets="every_item"``: :meth:`CausalEncoderT5.forward` with ``target_starts``), each
exactly as its own prefix example would be trained, and the last target is the inference
computation for the whole window. Inference, beam search and bundles use it like any T5.

``T5RecConfig.encoder="item_pooled"`` builds :class:`ItemPooledT5`: the same prompts (token rows, right-padded), but
its encoder reads one position per history item, the sum of the item's ``D`` SID token embeddings (a user token and
the eos stay positions of their own), so the encoder's self-attention and feed-forward layers run on ``D`` times fewer
positions: the prefix examples of a history re-encode it for every target, and the encoder is most of a training
step's cost. Its states are repeated back to token positions, so callers (training, beam search) see a T5.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.models.t5.modeling_t5 import T5Stack

from genrec.config import check_positive, require
from genrec.tokenizer.hub import check_loadable_folder
from genrec.vocab import EOS_ID, PAD_ID, TokenSpace

ENCODERS = ("bidirectional", "causal", "item_pooled")
T5_TRAIN_TARGETS = ("last", "every_item")


@dataclass
class T5RecConfig:
    """Model size; defaults are TIGER's (4.6M parameters with a 3x256+dedup vocabulary).

    ``encoder``: "bidirectional" (TIGER), "causal" (:class:`CausalEncoderT5`; prompts without eos) or "item_pooled"
    (:class:`ItemPooledT5`: a bidirectional encoder over one position per history item).
    ``train_targets``: "last" (one target per prefix example) or "every_item" (every item of a history
    window in one pass; needs ``encoder="causal"``).
    """

    d_model: int = 128
    num_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 6
    d_kv: int = 64
    d_ff: int = 1024
    dropout_rate: float = 0.1
    feed_forward_proj: str = "relu"
    encoder: str = "bidirectional"
    train_targets: str = "last"

    def __post_init__(self):
        check_positive(self, "d_model", "num_layers", "num_decoder_layers", "num_heads", "d_kv", "d_ff")
        require(0.0 <= self.dropout_rate < 1.0, f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        require(self.encoder in ENCODERS, f"model.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        require(self.train_targets in T5_TRAIN_TARGETS,
                f"model.train_targets must be one of {T5_TRAIN_TARGETS}, got {self.train_targets!r}")
        require(self.train_targets != "every_item" or self.encoder == "causal",
                "model.train_targets=every_item needs model.encoder=causal: a bidirectional encoder's "
                "states for a prefix depend on the items after it")


class CausalEncoderT5Config(T5Config):
    """A :class:`~transformers.T5Config` whose encoder is causal (its own ``model_type``, so loading picks the class)."""

    model_type = "genrec_causal_encoder_t5"


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, Q, K) booleans -> (B, 1, Q, K) additive mask: 0 where allowed, the dtype's minimum elsewhere.

    The minimum instead of -inf keeps a row with nothing allowed (a padding target) finite.
    """
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


class CausalT5Stack(T5Stack):
    """T5's encoder stack with a causal self-attention mask (each position sees itself and earlier ones).

    A 2-D padding mask (or None) from any caller (the model's forward, ``generate``, genrec's beam
    search) becomes the 4-D causal mask; a prepared 4-D mask is used as given.
    """

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        if attention_mask is None or attention_mask.dim() == 2:
            batch, length = shape
            device = input_ids.device if input_ids is not None else inputs_embeds.device
            positions = torch.arange(length, device=device)
            allowed = (positions[None, :] <= positions[:, None])[None].expand(batch, length, length)
            if attention_mask is not None:
                allowed = allowed & attention_mask.bool()[:, None, :]
            attention_mask = _additive(allowed, self.embed_tokens.weight.dtype)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)


def _replace_encoder(model: T5ForConditionalGeneration, stack_class: type[T5Stack]) -> None:
    """Swap ``model.encoder`` for a ``stack_class`` with the same weights, on the shared embeddings."""
    encoder = stack_class(model.encoder.config)
    encoder.load_state_dict(model.encoder.state_dict())
    model.encoder = encoder
    model.encoder.set_input_embeddings(model.shared)


class CausalEncoderT5(T5ForConditionalGeneration):
    """T5 with a causal encoder, trainable on every target of a history window in one pass.

    Called without ``target_starts`` it is a plain ``T5ForConditionalGeneration`` (prefix examples,
    inference, beam search). With ``target_starts`` (B, T) and ``labels`` (B, T * D), the decoder
    reads T rows of D tokens per user side by side, each attending only to itself (causally) and, in
    the encoder, to the first ``target_starts[b, t]`` positions; the loss is the mean over every
    target token, the mean of the T prefix examples' losses.
    """

    config_class = CausalEncoderT5Config

    def __init__(self, config: CausalEncoderT5Config):
        super().__init__(config)
        _replace_encoder(self, CausalT5Stack)

    def forward(self, input_ids=None, attention_mask=None, labels=None, target_starts=None, **kwargs):
        if target_starts is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        return self._every_target_forward(input_ids, attention_mask, labels, target_starts)

    def _every_target_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                              target_starts: torch.Tensor) -> Seq2SeqLMOutput:
        batch, length = input_ids.shape
        num_targets = target_starts.shape[1]
        if labels is None or labels.shape[1] % max(1, num_targets):
            raise ValueError(f"labels must be (B, T * D) for target_starts (B, T={num_targets}), got "
                             f"{None if labels is None else tuple(labels.shape)}")
        depth = labels.shape[1] // num_targets
        encoder_states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        # Decoder rows: per target [start, code_1 .. code_{D-1}] (teacher forcing), side by side.
        blocks = labels.view(batch, num_targets, depth)
        start = torch.full_like(blocks[..., :1], self.config.decoder_start_token_id)
        decoder_input_ids = torch.cat([start, blocks[..., :-1]], dim=-1).clamp(min=0).view(batch, num_targets * depth)
        # T5's decoder has relative positions only, so a block at any offset computes what it would alone.
        query = torch.arange(num_targets * depth, device=input_ids.device)
        same_block = (query[:, None] // depth) == (query[None, :] // depth)
        self_allowed = (same_block & (query[None, :] <= query[:, None]))[None].expand(batch, -1, -1)
        visible = target_starts.repeat_interleave(depth, dim=1)  # (B, T * D): encoder positions each row may see
        cross_allowed = torch.arange(length, device=input_ids.device)[None, None, :] < visible[:, :, None]
        if attention_mask is not None:
            cross_allowed = cross_allowed & attention_mask.bool()[:, None, :]
        dtype = self.shared.weight.dtype
        decoder_states = self.decoder(input_ids=decoder_input_ids, attention_mask=_additive(self_allowed, dtype),
                                      encoder_hidden_states=encoder_states,
                                      encoder_attention_mask=_additive(cross_allowed, dtype), use_cache=False).last_hidden_state
        if self.config.scale_decoder_outputs:
            decoder_states = decoder_states * (self.model_dim ** -0.5)
        logits = self.lm_head(decoder_states)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return Seq2SeqLMOutput(loss=loss, logits=logits, encoder_last_hidden_state=encoder_states)


class ItemPooledT5Config(T5Config):
    """A :class:`~transformers.T5Config` for :class:`ItemPooledT5`: ``genrec_item_depth`` SID tokens per item, after
    ``genrec_item_offset`` leading single-token positions (1 with a user token, else 0)."""

    model_type = "genrec_item_pooled_t5"

    def __init__(self, genrec_item_depth: int = 4, genrec_item_offset: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.genrec_item_depth = int(genrec_item_depth)
        self.genrec_item_offset = int(genrec_item_offset)


def _block_token_counts(mask: torch.Tensor, depth: int, offset: int) -> torch.Tensor:
    """(B, S) right-padded token mask -> (B, offset + ceil((S - offset) / depth)) tokens per encoder position of
    :class:`ItemPooledT5Stack`: the ``offset`` leading positions are single tokens, the rest blocks of ``depth``."""
    blocks = -(-(mask.shape[1] - offset) // depth)
    body = torch.nn.functional.pad(mask[:, offset:], (0, blocks * depth - (mask.shape[1] - offset)))
    return torch.cat([mask[:, :offset], body.view(mask.shape[0], blocks, depth).sum(2)], dim=1)


class ItemPooledT5Stack(T5Stack):
    """T5's encoder stack over one position per history item (see :class:`ItemPooledT5`).

    Input ``(B, S)`` token rows, right-padded: ``offset`` single-token positions, then items of ``D`` tokens, then eos.
    The stack runs on ``P = offset + ceil((S - offset) / D)`` positions, each item the sum of its token embeddings
    (padding contributes nothing; a block holding only eos is eos), and returns their states ``(B, P, d_model)``.
    """

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        embeds = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length = embeds.shape[:2]
        mask = (torch.ones((batch, length), dtype=torch.long, device=embeds.device) if attention_mask is None
                else attention_mask.long())
        if mask.dim() != 2:
            raise ValueError(f"ItemPooledT5 needs a (B, S) padding mask, got shape {tuple(mask.shape)}")
        # Item blocks are counted from the row's start. Checked on CPU only: on a GPU it would wait for the device.
        if mask.device.type == "cpu" and bool((mask[:, 1:] > mask[:, :-1]).any()):
            raise ValueError("ItemPooledT5 needs right-padded inputs (a padding mask of ones, then zeros)")
        depth, offset = self.config.genrec_item_depth, self.config.genrec_item_offset
        blocks = -(-(length - offset) // depth)
        body = torch.nn.functional.pad(embeds[:, offset:] * mask[:, offset:, None].to(embeds.dtype),
                                       (0, 0, 0, blocks * depth - (length - offset)))
        pooled = torch.cat([embeds[:, :offset], body.view(batch, blocks, depth, -1).sum(2)], dim=1)
        pooled_mask = (_block_token_counts(mask, depth, offset) > 0).long()
        return super().forward(inputs_embeds=pooled, attention_mask=pooled_mask, **kwargs)


_ENCODER_FLAGS = ("output_attentions", "output_hidden_states", "return_dict")


class ItemPooledT5(T5ForConditionalGeneration):
    """TIGER's T5 whose encoder runs on one position per history item (:class:`ItemPooledT5Stack`).

    Prompts, targets, the decoder and decoding are a T5's: only the encoder's positions change (``D`` + eos per item
    become one, T5's relative positions count items). The encoder returns one state per position, ``(B, P, d)``, and
    ``attention_mask`` stays the ``(B, S)`` token mask everywhere (training, ``generate``, genrec's beam search): the
    decoder's cross-attention weighs each item state as if it sat at each of its ``D`` token positions (an additive
    ``log D``), which is what attending the state repeated at token positions computes, with ``D`` times fewer keys.
    """

    config_class = ItemPooledT5Config

    def __init__(self, config: ItemPooledT5Config):
        super().__init__(config)
        _replace_encoder(self, ItemPooledT5Stack)

    def forward(self, input_ids=None, attention_mask=None, encoder_outputs=None, inputs_embeds=None, **kwargs):
        if encoder_outputs is None:  # as T5's forward does, with the flags that concern the encoder
            flags = {name: value for name, value in kwargs.items() if name in _ENCODER_FLAGS}
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                           **flags)
        if attention_mask is None or attention_mask.dim() == 2:
            attention_mask = self.cross_attention_mask(attention_mask, input_ids if input_ids is not None else inputs_embeds)
        return super().forward(attention_mask=attention_mask, encoder_outputs=encoder_outputs, **kwargs)

    def cross_attention_mask(self, attention_mask: torch.Tensor | None, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(B, S)`` token mask (None: every token of ``inputs`` ``(B, S, ...)``) -> ``(B, 1, 1, P)`` additive mask
        over the encoder's positions: ``log`` of each position's token count, the dtype's minimum where it has none."""
        if attention_mask is None:
            if inputs is None:
                raise ValueError("ItemPooledT5 needs attention_mask (or input_ids) to weigh its encoder positions")
            attention_mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
        dtype = self.shared.weight.dtype
        counts = _block_token_counts(attention_mask.long(), self.config.genrec_item_depth, self.config.genrec_item_offset)
        bias = counts.clamp(min=1).to(dtype).log().masked_fill(counts == 0, torch.finfo(dtype).min)
        return bias[:, None, None, :]


AutoConfig.register(CausalEncoderT5Config.model_type, CausalEncoderT5Config)
AutoModelForSeq2SeqLM.register(CausalEncoderT5Config, CausalEncoderT5)
AutoConfig.register(ItemPooledT5Config.model_type, ItemPooledT5Config)
AutoModelForSeq2SeqLM.register(ItemPooledT5Config, ItemPooledT5)
# The model class of each encoder kind (its config class is the class's config_class).
T5_CLASSES = {"bidirectional": T5ForConditionalGeneration, "causal": CausalEncoderT5, "item_pooled": ItemPooledT5}


def build_t5(vocab: TokenSpace, cfg: T5RecConfig | None = None) -> T5ForConditionalGeneration:
    """A randomly initialised T5 (:class:`CausalEncoderT5`, :class:`ItemPooledT5` by ``cfg.encoder``) whose vocabulary
    is exactly ``vocab``."""
    cfg = cfg or T5RecConfig()
    size = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("encoder", "train_targets")}
    if cfg.encoder == "item_pooled":
        size.update(genrec_item_depth=len(vocab.codebook_sizes), genrec_item_offset=1 if vocab.num_user_tokens else 0)
    cls = T5_CLASSES[cfg.encoder]
    config = cls.config_class(
        vocab_size=vocab.size,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=PAD_ID,
        tie_word_embeddings=True,
        **size,
    )
    return cls(config)


def prompt_eos_id(model_config, eos_id: int) -> int | None:
    """The token that ends a prompt for this model: ``eos_id``, or None for a causal-encoder T5 and for a decoder-only
    model built with ``prompt_eos=False`` (``genrec_prompt_eos`` in its config): no eos."""
    if getattr(model_config, "model_type", None) == CausalEncoderT5Config.model_type:
        return None
    return eos_id if getattr(model_config, "genrec_prompt_eos", True) else None


def load_t5(folder: str | Path) -> T5ForConditionalGeneration:
    """A saved T5 recommender of any encoder kind (safetensors only; a folder with code is refused)."""
    check_loadable_folder(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    cls = next((c for c in T5_CLASSES.values() if c is not T5ForConditionalGeneration and isinstance(config, c.config_class)),
               T5ForConditionalGeneration)
    return cls.from_pretrained(folder, use_safetensors=True)


__all__ = ["CausalEncoderT5", "CausalEncoderT5Config", "ItemPooledT5", "ItemPooledT5Config", "T5RecConfig", "build_t5",
           "load_t5", "prompt_eos_id"]
