"""Users' histories in, recommendations out: the files ``genrec recommend`` reads and writes.

History files for ``recommend`` (the format follows the suffix, or ``--input-format``):

- JSON: a list of ``{"user_id": ..., "history": [item ids, oldest first]}`` (``user_id`` optional),
  or a mapping ``{user_id: [item ids]}``;
- JSON Lines (``.jsonl``): one such object per line;
- CSV / TSV: a header with ``user_id`` and ``item_id`` (and optionally ``timestamp``; other columns
  are ignored), one row per interaction; rows are grouped per user (users in order of first
  appearance), ordered by timestamp when there is one (numbers or ISO 8601; ties keep file order),
  else in file order.

Recommendations are written as JSON (a list of ``{"user_id", "item_ids", "scores", "source",
"unknown_item_ids"}``), JSON Lines, or CSV/TSV with ``user_id,rank,item_id,score`` (rank from 1; the
request's position in the input stands in for a missing user id). ``--output -`` (the default) prints
JSON to stdout.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SCORE_DECIMALS = 5  # scores in output files (log-probabilities): enough to order them, short enough to read


class InputError(ValueError):
    """A history file that cannot be read; the message names the file and the line or entry."""


@dataclass
class HistoryRequest:
    """One user's history read from a file.

    Attributes:
        user_id: the user id, or None when the input gives none.
        history: item ids, oldest first (as strings).
        where: the request's place in the file, for error messages (``"h.csv: user 'u1' (line 3)"``).
    """

    user_id: str | None
    history: list[str]
    where: str


# ---------------------------------------------------------------------------------------------- reading


def file_format(path: str, explicit: str | None, default: str | None = None) -> str:
    if explicit:
        return explicit
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("json", "jsonl", "csv", "tsv"):
        return suffix
    if default:
        return default
    raise InputError(f"{path}: cannot tell the format from the suffix {Path(path).suffix!r}; use .json, .jsonl, .csv or .tsv "
                     "(or --input-format / --output-format)")


def _item_id(value, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # ids written as JSON numbers (e.g. MovieLens) are the catalogue's decimal strings
    raise InputError(f"{where}: an item id must be a non-empty string (or an integer), got {value!r}")


def _user_id(value, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{where}: 'user_id' must be a string or an integer, got {value!r}")


def _history(value, where: str) -> list[str]:
    if not isinstance(value, list):
        raise InputError(f"{where}: 'history' must be a list of item ids, got {type(value).__name__}")
    return [_item_id(item, f"{where}, history[{i}]") for i, item in enumerate(value)]


def _request_from_object(obj, where: str) -> HistoryRequest:
    if isinstance(obj, list):
        return HistoryRequest(None, _history(obj, where), where)
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an object {{\"user_id\": ..., \"history\": [...]}}, got {type(obj).__name__}")
    unknown = sorted(set(obj) - {"user_id", "history"})
    if unknown:
        raise InputError(f"{where}: unknown field(s) {unknown}; an entry has 'history' and optionally 'user_id'")
    if "history" not in obj:
        raise InputError(f"{where}: missing field 'history'")
    user = _user_id(obj.get("user_id"), where)
    where = where if user is None else f"{where} (user {user!r})"
    return HistoryRequest(user, _history(obj["history"], where), where)


def _parse_json(text: str, name: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where} line {e.lineno} column {e.colno}: invalid JSON ({e.msg})") from None


def read_histories(path: str | Path, input_format: str | None = None) -> list[HistoryRequest]:
    """Read history requests from a JSON / JSON Lines / CSV / TSV file (``"-"``: stdin, JSON by default).

    Raises:
        InputError: the file cannot be parsed; the message names the file and the line or entry.
    """
    name = str(path)
    fmt = file_format(name, input_format, default="json" if name == "-" else None)
    try:
        # utf-8-sig: a byte-order mark (as spreadsheet exports write) is dropped, as the data loader does
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: not UTF-8 text ({e})") from None
    if fmt == "json":
        data = _parse_json(text, name, f"{name}:")
        if isinstance(data, dict):
            return [HistoryRequest(str(user), _history(history, f"{name}: user {user!r}"), f"{name}: user {user!r}")
                    for user, history in data.items()]
        if not isinstance(data, list):
            raise InputError(f"{name}: expected a list of {{\"user_id\", \"history\"}} objects or a mapping user_id -> history, "
                             f"got {type(data).__name__}")
        return [_request_from_object(entry, f"{name}: entry {i}") for i, entry in enumerate(data)]
    if fmt == "jsonl":
        requests = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                requests.append(_request_from_object(_parse_json(line, name, f"{name}: line {number}"), f"{name}: line {number}"))
        return requests
    if fmt in ("csv", "tsv"):
        return _read_csv(text, name, delimiter="\t" if fmt == "tsv" else ",")
    raise InputError(f"{name}: unknown input format {fmt!r} (json, jsonl, csv, tsv)")


def _timestamp(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise InputError(f"{where}: timestamp {value!r} is neither a number nor an ISO 8601 date") from None


def _read_csv(text: str, name: str, delimiter: str) -> list[HistoryRequest]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise InputError(f"{name}: empty file (expected a header with user_id,item_id[,timestamp])")
    header = [h.strip() for h in header]
    missing = [c for c in ("user_id", "item_id") if c not in header]
    if missing:
        raise InputError(f"{name}: line 1: the header {header} lacks column(s) {missing} (expected user_id,item_id[,timestamp])")
    user_col, item_col = header.index("user_id"), header.index("item_id")
    time_col = header.index("timestamp") if "timestamp" in header else None
    rows: dict[str, list[tuple[float, int, str]]] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InputError(f"{name}: line {line}: {len(row)} field(s), the header has {len(header)}")
        user, item = row[user_col].strip(), row[item_col].strip()
        if not user:
            raise InputError(f"{name}: line {line}: empty user_id")
        if not item:
            raise InputError(f"{name}: line {line}: empty item_id")
        when = _timestamp(row[time_col].strip(), f"{name}: line {line}") if time_col is not None else 0.0
        rows.setdefault(user, []).append((when, line, item))
        first_line.setdefault(user, line)
    # sorted() is stable and the line number breaks ties: equal timestamps keep file order.
    return [HistoryRequest(user, [item for _, _, item in sorted(events)], f"{name}: user {user!r} (line {first_line[user]})")
            for user, events in rows.items()]


# ---------------------------------------------------------------------------------------------- writing


def write_recommendations(results, path: str | Path, output_format: str | None = None) -> None:
    """Write ``Recommendation`` results (see the module docstring for the formats; ``"-"``: stdout JSON)."""
    name = str(path)
    fmt = file_format(name, output_format, default="json" if name == "-" else None)
    if fmt == "json":
        # One line per user: readable for a handful of users, diff-friendly for many.
        text = "[\n" + ",\n".join("  " + json.dumps(_result_dict(r)) for r in results) + ("\n]\n" if results else "]\n")
    elif fmt == "jsonl":
        text = "".join(json.dumps(_result_dict(r)) + "\n" for r in results)
    elif fmt in ("csv", "tsv"):
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(["user_id", "rank", "item_id", "score"])
        for position, r in enumerate(results):
            user = r.user_id if r.user_id is not None else str(position)
            for rank, (item, score) in enumerate(zip(r.item_ids, r.scores, strict=True), start=1):
                writer.writerow([user, rank, item, round(float(score), SCORE_DECIMALS)])
        text = buffer.getvalue()
    else:
        raise InputError(f"{name}: unknown output format {fmt!r} (json, jsonl, csv, tsv)")
    if name == "-":
        sys.stdout.write(text)
    else:
        from genrec.training import atomic_write_text

        atomic_write_text(name, text)


def _result_dict(r) -> dict:
    # JSON has no -inf; scores are finite for every returned item, this only guards odd models.
    scores = [round(s, SCORE_DECIMALS) if math.isfinite(s) else None for s in r.scores]
    return {"user_id": r.user_id, "item_ids": r.item_ids, "scores": scores, "source": r.source, "unknown_item_ids": r.unknown_item_ids}
