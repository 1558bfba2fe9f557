"""Item text from a template over the item fields (the input of the text-embedding model).

A template is a sequence of *segments*. Segments are delimited by a period followed by whitespace
(``". "``): the Amazon default ``"Title: {title}. Brand: {brand}. Categories: {categories}."`` has the
three segments ``"Title: {title}."``, ``"Brand: {brand}."`` and ``"Categories: {categories}."``. Each
``{field}`` names an item column. Rendering rules:

- a segment is left out when any of its fields is missing (None, NaN, empty or blank string, empty
  list), so an item without a brand reads ``"Title: X. Categories: Y."``; put fields that may be
  missing independently into separate segments;
- list values are joined with ``", "`` (nested lists are flattened), whole floats print as ints
  (``1995.0`` -> ``"1995"``: pandas turns an int column with nulls into floats), strings are stripped;
- segments without fields are kept as literal text; the kept segments are joined with one space.

An item is *empty* when no segment with a field is kept: its text would say nothing about it.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections.abc import Iterable

import numpy as np
import pandas as pd

from genrec.data.io import DataError

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATES = {
    "amazon": "Title: {title}. Brand: {brand}. Categories: {categories}.",
    "movielens": "Title: {title}. Year: {year}. Genres: {genres}.",
    "title": "Title: {title}.",
}
ON_EMPTY = ("error", "item_id")
_SEGMENT_BOUNDARY = re.compile(r"(?<=\.)\s+")


def default_template(items: pd.DataFrame) -> str:
    """Pick a :data:`DEFAULT_TEMPLATES` entry by the item columns.

    ``brand`` or ``categories`` -> Amazon; ``genres`` or ``year`` -> MovieLens; else ``title`` ->
    title only. The template may name columns the table lacks; :func:`item_texts` reports them.
    """
    columns = set(items.columns)
    if columns & {"brand", "categories"}:
        return DEFAULT_TEMPLATES["amazon"]
    if columns & {"genres", "year"}:
        return DEFAULT_TEMPLATES["movielens"]
    if "title" in columns:
        return DEFAULT_TEMPLATES["title"]
    raise DataError(f"no default text template fits the item columns {list(items.columns)}; pass template='...{{column}}...'")


def template_segments(template: str) -> list[tuple[str, list[str]]]:
    """Split ``template`` into ``(segment, field names)`` pairs, in order."""
    segments = [s for s in _SEGMENT_BOUNDARY.split(template.strip()) if s]
    out = []
    for segment in segments:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(segment) if name is not None]
        except ValueError as e:
            raise DataError(f"text template segment {segment!r} is malformed: {e}") from e
        if any(name == "" or name.isdigit() for name in fields):
            raise DataError(f"text template segment {segment!r} has a positional '{{}}' field; name a column, e.g. '{{title}}'")
        out.append((segment, fields))
    return out


def _flatten(values: Iterable) -> list:
    out = []
    for v in values:
        out.extend(_flatten(v) if isinstance(v, (list, tuple, np.ndarray)) else [v])
    return out


def _render(value) -> str | None:
    """Text of one field value, or None when the value is missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [p for p in (_render(v) for v in _flatten(value)) if p is not None]
        return ", ".join(parts) if parts else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else str(value)
    text = str(value).strip()
    return text or None


def item_texts(items: pd.DataFrame, template: str | None = None, on_empty: str = "error",
               return_empty: bool = False) -> list[str] | tuple[list[str], list[str]]:
    """One text per item row, in catalogue (row) order.

    Args:
        items: the item table (``item_id`` + fields), e.g. ``RecDataset.items``.
        template: see the module docstring; None = :func:`default_template`.
        on_empty: empty items (see the module docstring): ``"error"`` raises a :class:`DataError` naming them;
            ``"item_id"`` gives them the text ``"Item <item_id>"`` and logs how many.
        return_empty: also return the ids of the empty items (those that got ``"Item <id>"``).
    Returns:
        N texts (and the list of empty item ids when ``return_empty``).
    """
    if on_empty not in ON_EMPTY:
        raise ValueError(f"on_empty must be one of {ON_EMPTY}, got {on_empty!r}")
    if "item_id" not in items.columns:
        raise DataError(f"the item table has no 'item_id' column; columns: {list(items.columns)}")
    template = template if template is not None else default_template(items)
    segments = template_segments(template)
    used = [name for _, fields in segments for name in fields]
    if not used:
        raise DataError(f"text template {template!r} names no item field; use '{{column}}' placeholders")
    unknown = sorted(set(used) - set(items.columns))
    if unknown:
        raise DataError(f"text template {template!r} uses field(s) {unknown} that are not item columns; columns: {list(items.columns)}")

    rendered = {name: [_render(v) for v in items[name].tolist()] for name in set(used)}
    item_ids = items["item_id"].astype(str).tolist()
    texts, empty = [], []
    for row, item_id in enumerate(item_ids):
        values = {name: rendered[name][row] for name in rendered}
        kept = [(segment, fields) for segment, fields in segments if all(values[f] is not None for f in fields)]
        if not any(fields for _, fields in kept):
            empty.append(item_id)
            texts.append(f"Item {item_id}")
            continue
        texts.append(" ".join(segment.format(**{f: values[f] for f in fields}) for segment, fields in kept))

    if empty and on_empty == "error":
        raise DataError(f"{len(empty)} item(s) have no text (no segment of the template {template!r} has all its values): {empty[:10]}"
                        f"{' ...' if len(empty) > 10 else ''}; pass on_empty='item_id' to use 'Item <id>' for them")
    if empty:
        logger.warning("%d of %d item(s) have no text; using 'Item <item_id>' for them (e.g. %s)", len(empty), len(texts), empty[:3])
    return (texts, empty) if return_empty else texts
