"""Examples -> token sequences for SID models, as Hugging Face ``datasets``.

Seq2seq (TIGER): ``input_ids`` = [user token] + the history items' SID tokens (oldest first) +
``</s>``; ``labels`` = the target item's D SID tokens. Decoder-only: the prompt (same tokens) is
followed by the target's tokens in one sequence, and ``labels`` mask the prompt with -100.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np
import torch

from genrec.data.split import Examples
from genrec.vocab import EOS_ID, PAD_ID

IGNORE_INDEX = -100


def _prompts(examples: Examples, item_tokens: np.ndarray, add_user_token: Callable[[int], int] | None) -> list[np.ndarray]:
    d = item_tokens.shape[1]
    flat = item_tokens[examples.history_values].reshape(-1)
    pieces = np.split(flat, examples.history_offsets[1:-1] * d) if len(examples) else []
    eos = np.array([EOS_ID], dtype=np.int64)
    if add_user_token is None:
        return [np.concatenate([p, eos]) for p in pieces]
    users = np.array([add_user_token(int(u)) for u in examples.user_index], dtype=np.int64)
    return [np.concatenate([users[i : i + 1], p, eos]) for i, p in enumerate(pieces)]


def _as_numpy(item_tokens) -> np.ndarray:
    arr = item_tokens.cpu().numpy() if isinstance(item_tokens, torch.Tensor) else np.asarray(item_tokens)
    if arr.ndim != 2:
        raise ValueError(f"item_tokens must be (num_items, depth), got shape {arr.shape}")
    return arr.astype(np.int64)


def build_seq2seq_dataset(examples: Examples, item_tokens, add_user_token: Callable[[int], int] | None = None) -> datasets.Dataset:
    """Columns ``input_ids``, ``labels``, ``target``, ``user_index``, ``length`` (len of input_ids)."""
    tokens = _as_numpy(item_tokens)
    prompts = _prompts(examples, tokens, add_user_token)
    return datasets.Dataset.from_dict({
        "input_ids": [p.tolist() for p in prompts],
        "labels": tokens[examples.target].tolist(),
        "target": examples.target.tolist(),
        "user_index": examples.user_index.tolist(),
        "length": [len(p) for p in prompts],
    })


def build_causal_dataset(examples: Examples, item_tokens, add_user_token: Callable[[int], int] | None = None) -> datasets.Dataset:
    """Decoder-only rows: ``input_ids`` = prompt + target tokens, ``labels`` = -100 on the prompt;
    ``prompt_length`` marks where the target starts."""
    tokens = _as_numpy(item_tokens)
    prompts = _prompts(examples, tokens, add_user_token)
    targets = tokens[examples.target]
    return datasets.Dataset.from_dict({
        "input_ids": [np.concatenate([p, t]).tolist() for p, t in zip(prompts, targets)],
        "labels": [[IGNORE_INDEX] * len(p) + t.tolist() for p, t in zip(prompts, targets)],
        "prompt_length": [len(p) for p in prompts],
        "target": examples.target.tolist(),
        "user_index": examples.user_index.tolist(),
        "length": [len(p) + tokens.shape[1] for p in prompts],
    })


def _pad(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if left:
            out[i, width - len(r) :] = torch.as_tensor(r)
        else:
            out[i, : len(r)] = torch.as_tensor(r)
    return out


class Seq2SeqCollator:
    """Rows -> right-padded ``input_ids``/``attention_mask`` + ``labels``, ``target``, ``user_index`` tensors."""

    def __init__(self, pad_id: int = PAD_ID):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        input_ids = _pad([r["input_ids"] for r in rows], self.pad_id)
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        batch = {
            "input_ids": input_ids,
            "attention_mask": (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long(),
            "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long),
        }
        for key in ("target", "user_index"):
            if key in rows[0]:
                batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.long)
        return batch


class CausalCollator:
    """Decoder-only rows -> left-padded ``input_ids``/``attention_mask``/``labels`` (-100 on padding).

    Left padding keeps every sequence's last token in the last column, which decoding relies on.
    """

    def __init__(self, pad_id: int = PAD_ID):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        input_ids = _pad([r["input_ids"] for r in rows], self.pad_id, left=True)
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        width = input_ids.shape[1]
        batch = {
            "input_ids": input_ids,
            "attention_mask": (torch.arange(width)[None, :] >= (width - lengths)[:, None]).long(),
            "labels": _pad([r["labels"] for r in rows], IGNORE_INDEX, left=True),
        }
        for key in ("target", "user_index", "prompt_length"):
            if key in rows[0]:
                batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.long)
        return batch
