"""Item text from a template over the item fields.

A template is a sequence of sentences, each holding ``{field}`` placeholders, e.g. the Amazon
default ``"Title: {title}. Brand: {brand}. Categories: {categories}."``. Sentences are split after
a period followed by whitespace; a sentence whose fields are all missing (null, NaN, empty string
or empty list) is left out, so an item without a brand reads ``"Title: X. Categories: Y."``.
List values are joined with ``", "``.
"""

from __future__ import annotations

import math
import re
import string

import pandas as pd

from genrec.data.io import DataError

DEFAULT_TEMPLATES = {
    "amazon": "Title: {title}. Brand: {brand}. Categories: {categories}.",
    "movielens": "Title: {title}. Year: {year}. Genres: {genres}.",
}


def default_template(items: pd.DataFrame) -> str:
    """The Amazon template when the table has ``brand``/``categories``, MovieLens when ``genres``, else title only."""
    cols = set(items.columns)
    if {"brand", "categories"} & cols:
        return DEFAULT_TEMPLATES["amazon"]
    if "genres" in cols:
        return DEFAULT_TEMPLATES["movielens"]
    if "title" in cols:
        return "{title}"
    raise DataError(f"no default text template for item columns {sorted(cols)}; pass template=...")


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist") and not isinstance(value, str):
        return len(list(value)) == 0
    return str(value).strip() == ""


def _render(value) -> str:
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, str)):
        return ", ".join(str(v) for v in list(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def item_texts(items: pd.DataFrame, template: str | None = None, on_empty: str = "error") -> list[str]:
    """One text per item row, in catalogue order.

    Args:
        items: the item table (``item_id`` + fields).
        template: see module docstring; None picks :func:`default_template`.
        on_empty: what to do with items whose text is empty: ``"error"`` (raise, naming them) or
            ``"item_id"`` (use ``"Item <id>"``; the count is logged).
    """
    if on_empty not in ("error", "item_id"):
        raise ValueError("on_empty must be 'error' or 'item_id'")
    template = template or default_template(items)
    sentences = [s for s in re.split(r"(?<=\.)\s+", template.strip()) if s]
    fields = [[f for _, f, _, _ in string.Formatter().parse(s) if f] for s in sentences]
    unknown = sorted({f for fs in fields for f in fs} - set(items.columns))
    if unknown:
        raise DataError(f"text template uses field(s) {unknown} that are not item columns {list(items.columns)}")
    records = items.to_dict("records")
    texts, empty = [], []
    for row in records:
        parts = []
        for sentence, fs in zip(sentences, fields):
            if fs and all(_missing(row[f]) for f in fs):
                continue
            parts.append(sentence.format(**{f: "" if _missing(row[f]) else _render(row[f]) for f in fs}))
        text = " ".join(parts).strip()
        if not text:
            empty.append(row["item_id"])
            text = f"Item {row['item_id']}"
        texts.append(text)
    if empty and on_empty == "error":
        raise DataError(f"{len(empty)} item(s) have no text under template {template!r}, e.g. {empty[:5]}; pass on_empty='item_id' to use their ids")
    if empty:
        import logging

        logging.getLogger(__name__).warning("%d item(s) have no text; using 'Item <id>' for them (e.g. %s)", len(empty), empty[:3])
    return texts
