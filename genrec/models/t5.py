"""TIGER-style encoder-decoder recommender: a plain ``T5ForConditionalGeneration`` on SID tokens.

Encoder input: the user's history as SID tokens (oldest first, optional user token in front),
ending with ``</s>``. Decoder target: the next item's ``D`` SID tokens (no eos: every SID has the
same length, so decoding runs exactly ``D`` steps). The decoder starts from ``<pad>`` (id 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import T5Config, T5ForConditionalGeneration

from genrec.vocab import EOS_ID, PAD_ID, SIDVocab


@dataclass
class T5RecConfig:
    """Model size; defaults are TIGER's (4.6M parameters with a 3x256+dedup vocabulary)."""

    d_model: int = 128
    num_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 6
    d_kv: int = 64
    d_ff: int = 1024
    dropout_rate: float = 0.1
    feed_forward_proj: str = "relu"


def build_t5(vocab: SIDVocab, cfg: T5RecConfig | None = None) -> T5ForConditionalGeneration:
    """A randomly initialised T5 whose vocabulary is exactly ``vocab``."""
    cfg = cfg or T5RecConfig()
    config = T5Config(
        vocab_size=vocab.size,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=PAD_ID,
        tie_word_embeddings=True,
        **asdict(cfg),
    )
    return T5ForConditionalGeneration(config)
