"""SASRec (Kang & McAuley, 2018) on item IDs: the non-generative reference of the comparisons.

A causal transformer over item-ID tokens predicts the next item at every position. It is trained
with full-softmax cross-entropy over the catalogue, the variant of SASRec that beats its original
sampled binary loss (Klenitskiy & Vasilev, RecSys 2023). The network is transformers' GPT-2
(learned positions, dropout, pre-LayerNorm blocks, output layer tied to the item embeddings) with
the catalogue as its vocabulary rather than a hand-written copy: token 0 is padding, item index i
is token i + 1.

Every item has its own embedding, learned only from interactions: an item that never occurs in
training (cold start) keeps its random initial row, which is the weakness Semantic IDs address.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

PAD_TOKEN = 0


@dataclass
class SASRecConfig:
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2  # embeddings, residuals and attention
    max_positions: int = 64  # >= max_history + 1


def build_sasrec(num_items: int, cfg: SASRecConfig) -> GPT2LMHeadModel:
    """A SASRec model for ``num_items`` items (vocabulary ``num_items + 1``: padding first)."""
    config = GPT2Config(vocab_size=num_items + 1, n_positions=cfg.max_positions, n_embd=cfg.hidden_size, n_layer=cfg.num_layers,
                        n_head=cfg.num_heads, n_inner=4 * cfg.hidden_size, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                        attn_pdrop=cfg.dropout, bos_token_id=PAD_TOKEN, eos_token_id=PAD_TOKEN, pad_token_id=PAD_TOKEN,
                        tie_word_embeddings=True)
    return GPT2LMHeadModel(config)


def sasrec_training_rows(train_sequences: list[np.ndarray], max_history: int) -> list[dict]:
    """Training rows from every user's training sequence (item indices, oldest first).

    A sequence is cut into windows of ``max_history + 1`` items that overlap by one item, so every
    position t >= 1 of the sequence is a target exactly once, with at most ``max_history`` items of
    context: the same targets as the generative models' training examples (``SplitData.train``).
    ``labels`` equal ``input_ids``; the model shifts them (position t predicts item t + 1).
    """
    rows = []
    for seq in train_sequences:
        tokens = (np.asarray(seq, dtype=np.int64) + 1).tolist()
        for end in range(len(tokens), 1, -max_history):
            window = tokens[max(0, end - max_history - 1):end]
            rows.append({"input_ids": window, "labels": window, "length": len(window)})
    return rows


def sasrec_eval_rows(examples) -> list[dict]:
    """One row per example of a :class:`genrec.data.split.Examples`: its history as tokens, its target item index."""
    rows = []
    for m, history in enumerate(examples.histories()):
        tokens = [i + 1 for i in history]
        rows.append({"input_ids": tokens, "labels": tokens, "length": len(tokens),
                     "target": int(examples.target[m]), "user_index": int(examples.user_index[m])})
    return rows


@torch.no_grad()
def rank_items(model: GPT2LMHeadModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, top_k: int) -> torch.Tensor:
    """(B, top_k) item indices, best first, scored at each row's last real position.

    Args:
        input_ids, attention_mask: (B, T) right-padded histories (as from ``CausalCollator``).
    """
    last = attention_mask.long().sum(dim=1) - 1
    position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    hidden = model.transformer(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
    logits = model.lm_head(hidden[torch.arange(len(last), device=hidden.device), last]).float()
    logits[:, PAD_TOKEN] = float("-inf")
    return logits.topk(top_k, dim=1).indices - 1
