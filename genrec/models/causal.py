"""Decoder-only recommender: a small Llama- or Qwen2-style causal LM built from a config on the SID vocabulary.

Same tokens as the T5 recommender (:meth:`genrec.vocab.TokenSpace.sid_layout`): the input is the prompt
``[user token] + history SID tokens + </s>`` followed by the target item's ``D`` SID tokens, and the
loss covers the target tokens only (:func:`genrec.data.build_causal_dataset`). Decoding is
:func:`genrec.decoding.constrained_beam_search_causal` on left-padded prompts. Everything goes
through public ``transformers`` classes (``LlamaConfig``/``LlamaForCausalLM``,
``Qwen2Config``/``Qwen2ForCausalLM``), so a saved model reloads with ``AutoModelForCausalLM``.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from genrec.config import check_positive, require
from genrec.vocab import EOS_ID, PAD_ID, TokenSpace

ARCHITECTURES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}


@dataclass
class CausalRecConfig:
    """Decoder-only model size. The defaults (~4.9M parameters with Beauty's vocabulary) are close
    to the TIGER-size T5 (4.6M): 4 layers of width 256, 4 heads of 64, SwiGLU MLP of 1024."""

    arch: str = "llama"  # "llama" | "qwen2"
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None = num_heads (no grouped-query attention)
    intermediate_size: int = 1024
    attention_dropout: float = 0.0
    max_position_embeddings: int = 512  # >= the longest prompt + D (20 items x 4 tokens + 6 for Beauty)
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    # Training targets (recipes/train_genrec.py): "last" = one row per training example, loss on its
    # target only (as the T5 model) | "every_item" = one row per window of max_history + 1 items,
    # loss on every item after the first (genrec.data.build_causal_window_dataset). Same prompts at
    # evaluation and serving either way.
    train_targets: str = "last"
    # Whether prompts end with </s> before the target (the layout of every release so far). False: the
    # target follows the last history item directly, the context from which every_item training
    # predicts each inner item, so the last target is learnt in the same context as the others. Saved
    # in the model's config (``genrec_prompt_eos``): evaluation, bundles and serving build the same prompts.
    prompt_eos: bool = True

    def __post_init__(self):
        check_positive(self, "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings")
        check_positive(self, "num_kv_heads", allow_none=True)
        require(0.0 <= self.attention_dropout < 1.0, f"attention_dropout must be in [0, 1), got {self.attention_dropout!r}")


def build_causal(vocab: TokenSpace, cfg: CausalRecConfig | None = None):
    """A randomly initialised Llama / Qwen2 causal LM whose vocabulary is exactly ``vocab``."""
    cfg = cfg or CausalRecConfig()
    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"model.causal.arch must be one of {sorted(ARCHITECTURES)}, got {cfg.arch!r}")
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}")
    config_cls, model_cls = ARCHITECTURES[cfg.arch]
    config = config_cls(
        vocab_size=vocab.size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        attention_dropout=cfg.attention_dropout,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=PAD_ID,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
    )
    if not cfg.prompt_eos:
        config.genrec_prompt_eos = False  # read by genrec.models.t5.prompt_eos_id (absent: True)
    return model_cls(config)
