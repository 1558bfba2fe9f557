"""Semantic IDs as text tokens of a Hugging Face text tokenizer (LLM- or T5-text recommenders).

Every (level, code) pair becomes one added token: with the default format ``<{level}_{code}>`` code
12 of the first level is ``<a_12>``, code 3 of the second ``<b_3>``; levels are named a, b, c, ...
The tokens are added as *non-special* ``AddedToken``s with ``normalized=False`` and no stripping, so
no tokenizer splits, lower-cases or merges them, and ``decode(..., skip_special_tokens=True)`` keeps
them (special tokens would be dropped). A SID of depth D is then D consecutive tokens:
``sid_to_text((12, 3, 0)) == "<a_12><b_3><c_0>"``.

After adding tokens, grow the model's embeddings with :func:`resize_model_embeddings`.
"""

from __future__ import annotations

import re

import torch
from tokenizers import AddedToken

LEVEL_NAMES = "abcdefghijklmnopqrstuvwxyz"
DEFAULT_FORMAT = "<{level}_{code}>"


def _check_format(fmt: str) -> None:
    if fmt.count("{level}") != 1 or fmt.count("{code}") != 1:
        raise ValueError(f"SID token format must contain '{{level}}' and '{{code}}' once each, got {fmt!r}")
    if fmt.index("{level}") > fmt.index("{code}"):
        raise ValueError(f"SID token format must name the level before the code, got {fmt!r}")


def level_name(level: int) -> str:
    """0 -> 'a', 1 -> 'b', ... (at most 26 levels)."""
    if not 0 <= level < len(LEVEL_NAMES):
        raise ValueError(f"SID level {level} has no name: levels are named a..z (at most {len(LEVEL_NAMES)} levels)")
    return LEVEL_NAMES[level]


def sid_token(level: int, code: int, fmt: str = DEFAULT_FORMAT) -> str:
    """The text token of ``code`` at ``level``, e.g. ``sid_token(0, 12) == "<a_12>"``."""
    if code < 0:
        raise ValueError(f"SID codes are non-negative, got {code} at level {level}")
    return fmt.format(level=level_name(level), code=int(code))


def sid_to_text(sid, fmt: str = DEFAULT_FORMAT) -> str:
    """A SID (sequence of D codes) -> its D tokens as one string, e.g. ``"<a_12><b_3><c_0>"``."""
    _check_format(fmt)
    return "".join(sid_token(level, int(code), fmt) for level, code in enumerate(sid))


def _token_pattern(fmt: str) -> re.Pattern:
    before, rest = fmt.split("{level}")
    middle, after = rest.split("{code}")
    return re.compile(re.escape(before) + "([a-z])" + re.escape(middle) + "([0-9]+)" + re.escape(after))


def text_to_sid(text: str, fmt: str = DEFAULT_FORMAT, num_levels: int | None = None) -> tuple[int, ...]:
    """Parse ``"<a_12><b_3><c_0>"`` (whitespace between tokens allowed) back to ``(12, 3, 0)``.

    The text must hold SID tokens only, for levels a, b, c, ... in order; ``num_levels`` (if given)
    is the required depth. Anything else raises ``ValueError`` quoting the offending text.
    """
    _check_format(fmt)
    pattern = _token_pattern(fmt)
    codes: list[int] = []
    pos = 0
    stripped = text.strip()
    while pos < len(stripped):
        if stripped[pos].isspace():
            pos += 1
            continue
        match = pattern.match(stripped, pos)
        if match is None:
            raise ValueError(f"not a SID token at position {pos} of {text!r}: {stripped[pos:pos + 20]!r}")
        expected = level_name(len(codes))
        if match.group(1) != expected:
            raise ValueError(f"SID tokens out of order in {text!r}: expected level '{expected}', got {match.group(0)!r}")
        codes.append(int(match.group(2)))
        pos = match.end()
    if not codes:
        raise ValueError(f"no SID tokens in {text!r}")
    if num_levels is not None and len(codes) != num_levels:
        raise ValueError(f"{text!r} has {len(codes)} SID levels, expected {num_levels}")
    return tuple(codes)


def add_sid_tokens(hf_tokenizer, codebook_sizes, fmt: str = DEFAULT_FORMAT) -> dict[tuple[int, int], int]:
    """Add one token per (level, code) to ``hf_tokenizer`` (in place) and return ``{(level, code): token id}``.

    Works with fast (``tokenizers``-backed) and slow (SentencePiece / Python) tokenizers. Tokens that
    already exist (a second call, or after a dedup level grew) keep their ids. Every token is checked
    to encode to exactly its own id, so a tokenizer that would split them fails here, not in training.

    Args:
        hf_tokenizer: any ``transformers`` tokenizer.
        codebook_sizes: size of every SID level, dedup level included (e.g. ``SIDTokenizer.codebook_sizes``).
        fmt: token format with ``{level}`` (a, b, c, ...) and ``{code}`` placeholders.
    """
    _check_format(fmt)
    keys = [(level, code) for level, size in enumerate(codebook_sizes) for code in range(int(size))]
    tokens = [sid_token(level, code, fmt) for level, code in keys]
    hf_tokenizer.add_tokens([AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)
                             for t in tokens])
    ids = hf_tokenizer.convert_tokens_to_ids(tokens)
    encoded = hf_tokenizer(tokens, add_special_tokens=False)["input_ids"]
    broken = [(t, e) for t, i, e in zip(tokens, ids, encoded, strict=True) if e != [i]]
    if broken:
        token, pieces = broken[0]
        raise ValueError(f"{len(broken)} SID token(s) do not encode to a single token id in {type(hf_tokenizer).__name__}, "
                         f"e.g. {token!r} -> {pieces}")
    return dict(zip(keys, ids, strict=True))


@torch.no_grad()
def resize_model_embeddings(model, tokenizer, init: str = "mean", token_ids=None, pad_to_multiple_of: int | None = None) -> list[int]:
    """Grow ``model``'s input (and untied output) embeddings to hold every token of ``tokenizer``; initialise new rows.

    Resizing goes through the public ``model.resize_token_embeddings``; it never shrinks a matrix
    (T5 checkpoints keep spare rows: 32,128 rows for 32,100 tokens), so added tokens may land on
    rows that already exist.

    Args:
        init: ``"mean"``: every initialised row of the input embeddings is the mean of the other
            (pre-existing) rows, likewise for an untied output layer and its bias, so the model's
            next-token distribution barely moves (Hewitt, 2021); deterministic. ``"sampled"``: keep
            what ``resize_token_embeddings(mean_resizing=True)`` drew (a normal around that mean);
            only rows added by the resize can be initialised this way.
        token_ids: rows to initialise (e.g. ``list(add_sid_tokens(...).values())`` to also reset
            spare rows the new tokens landed on). Default: the rows the resize added.
        pad_to_multiple_of: passed to ``resize_token_embeddings``.

    Returns:
        The sorted row ids that were initialised.
    """
    if init not in ("mean", "sampled"):
        raise ValueError(f"init must be 'mean' or 'sampled', got {init!r}")
    old_rows = model.get_input_embeddings().weight.shape[0]
    target = max(old_rows, len(tokenizer))
    if target > old_rows or pad_to_multiple_of is not None:
        model.resize_token_embeddings(target, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=(init == "sampled"))
    new_rows = model.get_input_embeddings().weight.shape[0]
    rows = sorted({int(i) for i in token_ids}) if token_ids is not None else list(range(old_rows, new_rows))
    if rows and (rows[0] < 0 or rows[-1] >= new_rows):
        raise ValueError(f"token_ids must lie in [0, {new_rows}), got {rows[0]}..{rows[-1]}")
    if init == "sampled":
        if rows and rows[0] < old_rows:
            raise ValueError(f"init='sampled' only initialises rows added by the resize (>= {old_rows}); got row {rows[0]}")
        return rows
    if not rows:
        return rows
    index = torch.tensor(rows)
    keep = torch.ones(new_rows, dtype=torch.bool)
    keep[index] = False
    keep[old_rows:] = False  # rows the resize appended carry no trained values
    if not keep.any():
        raise ValueError("no pre-existing embedding rows are left to average: token_ids cover the whole matrix")
    inputs = model.get_input_embeddings().weight
    inputs[index] = inputs[keep].mean(dim=0).to(inputs.dtype)
    outputs = model.get_output_embeddings()
    if outputs is not None and outputs.weight is not inputs:
        outputs.weight[index] = outputs.weight[keep].mean(dim=0).to(outputs.weight.dtype)
        if getattr(outputs, "bias", None) is not None:
            outputs.bias[index] = outputs.bias[keep].mean().to(outputs.bias.dtype)
    return rows


__all__ = ["DEFAULT_FORMAT", "add_sid_tokens", "level_name", "resize_model_embeddings", "sid_to_text", "sid_token", "text_to_sid"]
