"""Semantic IDs as text tokens of a Hugging Face text tokenizer (LLM- or T5-text recommenders).

Every (level, code) pair becomes one added token: with the default format ``<{level}_{code}>`` code
12 of the first level is ``<a_12>``, code 3 of the second ``<b_3>``; levels are named a, b, c, ...
The tokens are added as *non-special* ``AddedToken``s with ``normalized=False`` and no stripping, so
no tokenizer splits, lower-cases or merges them, and ``decode(..., skip_special_tokens=True)`` keeps
them (special tokens would be dropped). A SID of depth D is then D consecutive tokens:
``sid_to_text((12, 3, 0)) == "<a_12><b_3><c_0>"``.

This module only lays out the tokens (text side); growing a model's embedding matrices for them is
model code: :func:`genrec.models.lora.resize_model_embeddings`.
"""

from __future__ import annotations

import re

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


__all__ = ["DEFAULT_FORMAT", "add_sid_tokens", "level_name", "sid_to_text", "sid_token", "text_to_sid"]
