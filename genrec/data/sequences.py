"""Examples -> SID-token sequences for the models, as Hugging Face ``datasets``.

Every item is ``D`` tokens (its row of ``item_tokens``, see ``TokenSpace.codes_to_tokens``).

Seq2seq (TIGER, encoder-decoder):
    ``input_ids`` = [user token] + the history items' tokens, oldest first + ``</s>``;
    ``labels`` = the target item's ``D`` tokens (no ``</s>``: every SID has the same length).
Decoder-only:
    ``input_ids`` = the same prompt followed by the target's ``D`` tokens;
    ``labels`` = ``-100`` on the prompt (no loss), the target's tokens after it.
    :func:`build_causal_window_dataset` builds the same rows from windows of a training sequence
    and also puts labels on every history item after the first (every item is a target).
Mixed text + SID (a pretrained language model whose tokenizer got the SID tokens):
    ``item_text_tokens`` puts each history item's text tokens (e.g. its title) before its SID
    tokens, ``prompt_tokens`` an instruction before the history, ``eos_id`` is the model's ``</s>``.

The datasets are built with numpy over the concatenated histories and handed to Arrow as list
columns (no Python loop per example or token): Beauty's 131k training examples take well under a
second.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np
import pyarrow as pa
import torch

from genrec.data.split import MAX_HISTORY, Examples
from genrec.vocab import EOS_ID, PAD_ID

IGNORE_INDEX = -100  # label value the loss skips (PyTorch / HF convention)


def _item_tokens_array(item_tokens: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = item_tokens.detach().cpu().numpy() if isinstance(item_tokens, torch.Tensor) else np.asarray(item_tokens)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"item_tokens must be (num_items, D) token ids, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _user_tokens(examples: Examples, add_user_token: Callable[[int], int]) -> np.ndarray:
    """(M,) the user token of each example; ``add_user_token`` is called once per distinct user."""
    users, inverse = np.unique(examples.user_index, return_inverse=True)
    per_user = np.array([int(add_user_token(int(u))) for u in users], dtype=np.int64)
    return per_user[inverse]


def _list_column(lengths: np.ndarray, values: np.ndarray) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        return pa.LargeListArray.from_arrays(offsets, values)
    return pa.ListArray.from_arrays(offsets.astype(np.int32), values)


def _prompts(examples: Examples, tokens: np.ndarray, add_user_token: Callable[[int], int] | None,
             suffix_tokens: np.ndarray | None = None, eos_id: int | None = EOS_ID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated rows ``[user] + history tokens + </s> + [suffix]`` for all M examples.

    Returns ``(values, lengths, prompt_lengths)``: the flat int64 token array, each row's length and
    each row's prompt length (without the suffix). ``suffix_tokens`` is (M, S) or None.
    """
    # The SID-only case of the general builder (no item text, no prompt): one place builds every row.
    return _text_sid_prompts(examples, tokens, add_user_token, suffix_tokens, eos_id, None, None)


def _text_sid_prompts(examples: Examples, tokens: np.ndarray, add_user_token: Callable[[int], int] | None,
                      suffix_tokens: np.ndarray | None, eos_id: int | None, item_text_tokens: list[list[int]] | None,
                      prompt_tokens: list[int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_prompts` with text: rows ``[user] + prompt + (item text + item SID) per history item + eos + [suffix]``.

    ``item_text_tokens`` holds one token list per catalogue item (None = SIDs only); ``prompt_tokens``
    is put once after the user token; ``eos_id`` None leaves the eos out (causal-encoder prompts).
    Same returns as :func:`_prompts`.
    """
    n, depth = tokens.shape
    if item_text_tokens is not None and len(item_text_tokens) != n:
        raise ValueError(f"item_text_tokens has {len(item_text_tokens)} rows for {n} items")
    for name, indices in (("history", examples.history_values), ("target", examples.target)):
        if indices.size and (indices.max() >= n or indices.min() < 0):
            raise ValueError(f"{name} item index out of range [0, {n}) for item_tokens with {n} rows")
    # Each item's history unit: its text tokens, then its D SID tokens (ragged: values + offsets).
    text_lengths = np.array([len(t) for t in item_text_tokens], dtype=np.int64) if item_text_tokens is not None else np.zeros(n, np.int64)
    unit_lengths = text_lengths + depth
    unit_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(unit_lengths, out=unit_offsets[1:])
    unit_values = np.empty(int(unit_offsets[-1]), dtype=np.int64)
    sid_at = (unit_offsets[1:, None] - depth + np.arange(depth)[None, :]).reshape(-1)
    unit_values[sid_at] = tokens.reshape(-1)
    if item_text_tokens is not None and text_lengths.sum():
        is_text = np.ones(len(unit_values), dtype=bool)
        is_text[sid_at] = False
        unit_values[is_text] = np.fromiter((t for row in item_text_tokens for t in row), dtype=np.int64, count=int(text_lengths.sum()))

    prompt = np.asarray(prompt_tokens if prompt_tokens is not None else [], dtype=np.int64)
    m = len(examples)
    has_user = add_user_token is not None
    head = int(has_user) + len(prompt)
    history_units = unit_lengths[examples.history_values]
    history_tokens = np.zeros(m, dtype=np.int64)
    np.add.at(history_tokens, np.repeat(np.arange(m), examples.history_lengths), history_units)
    suffix_len = 0 if suffix_tokens is None else suffix_tokens.shape[1]
    has_eos = eos_id is not None
    prompt_lengths = head + history_tokens + int(has_eos)
    lengths = prompt_lengths + suffix_len
    starts = np.zeros(m, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])

    values = np.empty(int(lengths.sum()), dtype=np.int64)
    is_history = np.ones(len(values), dtype=bool)
    eos_at = starts + prompt_lengths - 1  # the eos, or the prompt's last token when there is none
    if has_eos:
        values[eos_at] = eos_id
        is_history[eos_at] = False
    if has_user:
        values[starts] = _user_tokens(examples, add_user_token)
        is_history[starts] = False
    if len(prompt):
        prompt_at = (starts[:, None] + int(has_user) + np.arange(len(prompt))[None, :]).reshape(-1)
        values[prompt_at] = np.tile(prompt, m)
        is_history[prompt_at] = False
    if suffix_len:
        suffix_at = (eos_at[:, None] + 1 + np.arange(suffix_len)[None, :]).reshape(-1)
        values[suffix_at] = suffix_tokens.reshape(-1)
        is_history[suffix_at] = False
    # What is left, in order, is every history item's unit, example after example.
    total = int(history_units.sum())
    unit_starts = unit_offsets[examples.history_values]
    before = np.zeros(len(history_units), dtype=np.int64)
    np.cumsum(history_units[:-1], out=before[1:])
    gather = np.repeat(unit_starts - before, history_units) + np.arange(total)
    values[is_history] = unit_values[gather]
    return values, lengths, prompt_lengths


def build_seq2seq_dataset(examples: Examples, item_tokens: np.ndarray | torch.Tensor,
                          add_user_token: Callable[[int], int] | None = None, *, eos_id: int | None = EOS_ID,
                          item_text_tokens: list[list[int]] | None = None,
                          prompt_tokens: list[int] | None = None) -> datasets.Dataset:
    """Encoder-decoder rows, one per example.

    Args:
        examples: M examples (``SplitData.train`` / ``valid`` / ``test``).
        item_tokens: (num_items, D) token ids of every catalogue item (row = item index).
        add_user_token: ``user_index -> token id`` (e.g. ``TokenSpace.user_token``) to put first; None = no user token.
        eos_id: the token ending the prompt (``</s>`` of the model's vocabulary); None = no eos (the
            prompts of a causal-encoder T5, see :func:`build_every_target_dataset`).
        item_text_tokens: mixed text + SID inputs: one token list per catalogue item (e.g. its title in
            a text tokenizer) put before each history item's SID tokens; None = SIDs only.
        prompt_tokens: tokens put once after the user token, before the history (e.g. an instruction).
    Returns:
        Dataset with ``input_ids`` (list[int], length ``[1] + D * len(history) + 1``), ``labels``
        (list[int], D), ``target`` (item index), ``user_index`` and ``length`` (= len(input_ids)).
    """
    tokens = _item_tokens_array(item_tokens)
    if item_text_tokens is None and prompt_tokens is None:
        values, lengths, _ = _prompts(examples, tokens, add_user_token, eos_id=eos_id)
    else:
        values, lengths, _ = _text_sid_prompts(examples, tokens, add_user_token, None, eos_id, item_text_tokens, prompt_tokens)
    depth = tokens.shape[1]
    return datasets.Dataset.from_dict({
        "input_ids": _list_column(lengths, values),
        "labels": _list_column(np.full(len(examples), depth), tokens[examples.target].reshape(-1)),
        "target": examples.target.astype(np.int64),
        "user_index": examples.user_index.astype(np.int64),
        "length": lengths,
    })


def build_causal_dataset(examples: Examples, item_tokens: np.ndarray | torch.Tensor,
                         add_user_token: Callable[[int], int] | None = None, *, eos_id: int | None = EOS_ID,
                         item_text_tokens: list[list[int]] | None = None,
                         prompt_tokens: list[int] | None = None) -> datasets.Dataset:
    """Decoder-only rows, one per example (arguments as in :func:`build_seq2seq_dataset`).

    Returns:
        Dataset with ``input_ids`` (prompt as in :func:`build_seq2seq_dataset` + the target's D
        tokens), ``labels`` (same length: -100 on the prompt, the target's tokens after it),
        ``prompt_length``, ``target``, ``user_index`` and ``length`` (= len(input_ids)).
    """
    tokens = _item_tokens_array(item_tokens)
    target_tokens = tokens[examples.target]
    if item_text_tokens is None and prompt_tokens is None:
        values, lengths, prompt_lengths = _prompts(examples, tokens, add_user_token, suffix_tokens=target_tokens, eos_id=eos_id)
    else:
        values, lengths, prompt_lengths = _text_sid_prompts(examples, tokens, add_user_token, target_tokens, eos_id,
                                                            item_text_tokens, prompt_tokens)
    return _causal_rows(examples, values, lengths, prompt_lengths, _target_labels(values, lengths, tokens.shape[1]))


def _target_labels(values: np.ndarray, lengths: np.ndarray, depth: int) -> np.ndarray:
    """Labels for concatenated rows: each row's last ``depth`` tokens (its target), -100 elsewhere."""
    target_at = (np.cumsum(lengths)[:, None] - depth + np.arange(depth)[None, :]).reshape(-1)
    labels = np.full_like(values, IGNORE_INDEX)
    labels[target_at] = values[target_at]
    return labels


def _causal_rows(examples: Examples, values: np.ndarray, lengths: np.ndarray, prompt_lengths: np.ndarray,
                 labels: np.ndarray) -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "input_ids": _list_column(lengths, values),
        "labels": _list_column(lengths, labels),
        "prompt_length": prompt_lengths,
        "target": examples.target.astype(np.int64),
        "user_index": examples.user_index.astype(np.int64),
        "length": lengths,
    })


def causal_windows(train_sequences: list[np.ndarray], max_history: int) -> Examples:
    """Every user's training sequence cut into windows of up to ``max_history + 1`` items.

    Windows end at the sequence's last item and step back by ``max_history``, so consecutive windows
    overlap by one item and every position t >= 1 is the last or an inner item of exactly one window
    (the windows of :func:`genrec.models.sasrec.sasrec_training_rows`). Window w_0..w_k is returned
    as the example history w_0..w_{k-1}, target w_k; ``user_index`` is the sequence's row.
    """
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    users, targets, histories = [], [], []
    for user, seq in enumerate(train_sequences):
        seq = np.asarray(seq, dtype=np.int64)
        for end in range(len(seq), 1, -max_history):
            window = seq[max(0, end - max_history - 1):end]
            users.append(user)
            targets.append(window[-1])
            histories.append(window[:-1])
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    offsets = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(histories) if histories else np.zeros(0, dtype=np.int64)
    return Examples(user_index=np.array(users, dtype=np.int64), target=np.array(targets, dtype=np.int64),
                    history_values=values, history_offsets=offsets)


def build_causal_window_dataset(train_sequences: list[np.ndarray], item_tokens: np.ndarray | torch.Tensor,
                                add_user_token: Callable[[int], int] | None = None, *, max_history: int = MAX_HISTORY,
                                eos_id: int | None = EOS_ID) -> datasets.Dataset:
    """Decoder-only training rows in which every training item is a target: one row per window.

    A window w_0..w_k (:func:`causal_windows`) is the :func:`build_causal_dataset` row of history
    w_0..w_{k-1} and target w_k, with labels also on the SID tokens of w_1..w_{k-1}: each history
    item is predicted from the items before it, as a causal language model learns every position,
    and the last item after ``</s>``, as it is decoded. The rows are the ones evaluation and serving
    use, so nothing else changes; Beauty's 131k training targets fit in ~24k rows.

    Args:
        train_sequences: row u = user u's training items (``SplitData.train_sequences``), oldest first.
        item_tokens, add_user_token, eos_id: as in :func:`build_causal_dataset` (SID-only rows).
        max_history: items of context at most (the run's ``max_history``).
    Returns:
        :func:`build_causal_dataset`'s columns; ``target`` is each window's last item.
    """
    examples = causal_windows(train_sequences, max_history)
    tokens = _item_tokens_array(item_tokens)
    depth = tokens.shape[1]
    values, lengths, prompt_lengths = _prompts(examples, tokens, add_user_token, suffix_tokens=tokens[examples.target], eos_id=eos_id)
    labels = _target_labels(values, lengths, depth)
    # Inner items: every history token after the first item's D tokens.
    history_tokens = depth * examples.history_lengths
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    before = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(history_tokens[:-1], out=before[1:])
    within = np.arange(int(history_tokens.sum())) - np.repeat(before, history_tokens)
    at = np.repeat(starts + int(add_user_token is not None), history_tokens) + within
    inner = at[within >= depth]
    labels[inner] = values[inner]
    return _causal_rows(examples, values, lengths, prompt_lengths, labels)


def build_every_target_dataset(train_sequences: list[np.ndarray], item_tokens: np.ndarray | torch.Tensor,
                               add_user_token: Callable[[int], int] | None = None, *,
                               max_history: int = MAX_HISTORY) -> datasets.Dataset:
    """Encoder-decoder training rows in which every training item is a target: one row per window.

    For a causal-encoder T5 (``T5RecConfig.encoder="causal"``). A window w_0..w_k
    (:func:`causal_windows`, the windows of the decoder-only ``every_item`` mode) becomes one row:
    the encoder reads ``[user] + SID tokens of w_0..w_{k-1}`` (no eos: causal-encoder prompts end with
    the last history item), and each of w_1..w_k is a target whose decoder row may attend only to the
    encoder positions before it. Target j (item w_j) sees the first ``target_starts[j]`` positions:
    the user token and items w_0..w_{j-1}, exactly the prompt :func:`build_seq2seq_dataset` builds
    for that prefix with ``eos_id=None``. Since a causal encoder's states at those positions do not
    depend on what follows, one pass computes every prefix example of the window; the last target
    is the inference computation for the full window.

    Returns:
        Dataset with ``input_ids`` (list[int]), ``labels`` (list[int], the k targets' D tokens,
        concatenated), ``target_starts`` (list[int], k), ``target`` (w_k), ``user_index``, ``length``
        (= len(input_ids)) and ``num_targets`` (k).
    """
    examples = causal_windows(train_sequences, max_history)
    tokens = _item_tokens_array(item_tokens)
    depth = tokens.shape[1]
    values, lengths, _ = _prompts(examples, tokens, add_user_token, eos_id=None)
    # Targets of a window: its history items after the first, then its last item.
    num_targets = examples.history_lengths.copy()  # k = (k history items) - 1 inner + 1 last
    head = int(add_user_token is not None)
    target_items, target_starts = [], []
    for m in range(len(examples)):
        history = examples.history(m)
        target_items.append(np.append(history[1:], examples.target[m]))
        target_starts.append(head + depth * np.arange(1, len(history) + 1))
    target_items = np.concatenate(target_items) if target_items else np.zeros(0, np.int64)
    target_starts = np.concatenate(target_starts) if target_starts else np.zeros(0, np.int64)
    return datasets.Dataset.from_dict({
        "input_ids": _list_column(lengths, values),
        "labels": _list_column(num_targets * depth, tokens[target_items].reshape(-1)),
        "target_starts": _list_column(num_targets, target_starts.astype(np.int64)),
        "target": examples.target.astype(np.int64),
        "user_index": examples.user_index.astype(np.int64),
        "length": lengths,
        "num_targets": num_targets,
    })


def _pad(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """(B, max length) LongTensor of ``rows`` padded with ``value`` on the right (or left)."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r) == 0:
            continue
        if left:
            out[i, width - len(r):] = torch.as_tensor(r, dtype=torch.long)
        else:
            out[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


def _attention_mask(lengths: torch.Tensor, width: int, left: bool) -> torch.Tensor:
    positions = torch.arange(width)[None, :]
    if left:
        return (positions >= (width - lengths)[:, None]).long()
    return (positions < lengths[:, None]).long()


def _extra_columns(rows: list[dict], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([r[k] for r in rows], dtype=torch.long) for k in keys if k in rows[0]}


class Seq2SeqCollator:
    """Rows of :func:`build_seq2seq_dataset` -> a batch of LongTensors.

    ``input_ids`` / ``attention_mask``: (B, T) right-padded with ``pad_id`` to the batch's longest
    row; ``labels``: (B, D); ``target``, ``user_index``: (B,).
    """

    def __init__(self, pad_id: int = PAD_ID):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        input_ids = _pad([r["input_ids"] for r in rows], self.pad_id)
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        label_lengths = {len(r["labels"]) for r in rows}
        if len(label_lengths) != 1:
            raise ValueError(f"labels of one batch must have the same length (D), got lengths {sorted(label_lengths)}")
        return {
            "input_ids": input_ids,
            "attention_mask": _attention_mask(lengths, input_ids.shape[1], left=False),
            "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long),
            **_extra_columns(rows, ("target", "user_index")),
        }


class EveryTargetCollator:
    """Rows of :func:`build_every_target_dataset` -> a batch of LongTensors.

    ``input_ids`` / ``attention_mask``: (B, S) right-padded with ``pad_id``; ``labels``: (B, T * D)
    padded with -100 (T = the batch's most targets); ``target_starts``: (B, T) padded with 0 (a
    padding target sees nothing and has no loss); ``target``, ``user_index``: (B,).
    """

    def __init__(self, pad_id: int = PAD_ID):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        input_ids = _pad([r["input_ids"] for r in rows], self.pad_id)
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        return {
            "input_ids": input_ids,
            "attention_mask": _attention_mask(lengths, input_ids.shape[1], left=False),
            "labels": _pad([r["labels"] for r in rows], IGNORE_INDEX),
            "target_starts": _pad([r["target_starts"] for r in rows], 0),
            **_extra_columns(rows, ("target", "user_index")),
        }


class CausalCollator:
    """Rows of :func:`build_causal_dataset` -> a batch of LongTensors.

    ``input_ids`` (pad ``pad_id``), ``attention_mask`` and ``labels`` (pad -100) are (B, T), padded
    on ``padding_side``: ``"right"`` for training, ``"left"`` for batched generation (every row then
    ends in the last column). ``position_ids`` (B, T) count real tokens only, so a row's positions
    do not depend on its padding. ``prompt_length``, ``target``, ``user_index``: (B,).
    """

    def __init__(self, pad_id: int = PAD_ID, padding_side: str = "right"):
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.pad_id = pad_id
        self.padding_side = padding_side

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        left = self.padding_side == "left"
        input_ids = _pad([r["input_ids"] for r in rows], self.pad_id, left=left)
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        attention_mask = _attention_mask(lengths, input_ids.shape[1], left=left)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": _pad([r["labels"] for r in rows], IGNORE_INDEX, left=left),
            "position_ids": (attention_mask.cumsum(1) - 1).clamp(min=0),
            **_extra_columns(rows, ("prompt_length", "target", "user_index")),
        }


def without_level_loss(dataset: datasets.Dataset, first_token: int, size: int) -> datasets.Dataset:
    """``dataset`` with every label in the token range ``[first_token, first_token + size)`` (one SID level's tokens)
    set to IGNORE_INDEX: that level carries no loss. Inputs are unchanged (history items keep all their tokens)."""
    last = first_token + size

    def mask(batch: dict) -> dict:
        return {"labels": [[IGNORE_INDEX if first_token <= token < last else token for token in row] for row in batch["labels"]]}

    return dataset.map(mask, batched=True, batch_size=10_000)
