"""Loading interaction logs and item tables, with validation that names the offending file and field.

The standard on-disk format (one folder per dataset, e.g. ``$GENREC_DATA_DIR/amazon_beauty/``):

- ``interactions.csv.gz``: header ``user_id,item_id,timestamp``, one row per interaction; ids are
  strings, ``timestamp`` an integer (Unix seconds, or just a position: only the order matters);
- ``items.jsonl.gz``: one JSON object per item, ``item_id`` + text fields (``title``, ``brand``,
  ``categories``, ...); the line order is the catalogue order (item index i = line i + 1).

Anything else (the user's own CSV / TSV / JSONL / Parquet files, optionally ``.gz``) is read by
:func:`load_interactions` / :func:`load_items` with a mapping of its columns to the standard names,
or all at once by :meth:`RecDataset.from_files`.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "GENREC_DATA_DIR"
INTERACTIONS_FILE = "interactions.csv.gz"
ITEMS_FILE = "items.jsonl.gz"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class DataError(ValueError):
    """Input data that cannot be used as is; the message names the file and the problem."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$GENREC_DATA_DIR``; it must exist."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not value:
        raise DataError(f"no data directory given: pass data_dir=... (--data-dir on the command line) or set the environment "
                        f"variable, e.g. `export {DATA_DIR_ENV}=/path/to/data` (the folder holding amazon_beauty/, ml_100k/, ...)")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory does not exist: {path}")
    return path


def file_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format named by the suffix (a trailing ``.gz`` is skipped)."""
    if fmt is not None:
        if fmt not in set(FORMATS.values()):
            raise DataError(f"{path}: unknown format {fmt!r}; use one of {sorted(set(FORMATS.values()))}")
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in FORMATS:
        raise DataError(f"{path}: cannot tell the format from the file name; name it .csv/.tsv/.jsonl/.parquet (optionally .gz) "
                        f"or pass fmt='csv'|'tsv'|'jsonl'|'parquet'")
    return FORMATS[suffixes[-1]]


def _read_jsonl(path: Path) -> pd.DataFrame:
    """JSON lines (or one JSON array) read with ``json``: strings stay strings (``"0012"``), nothing
    is guessed to be a date, and a bad line is reported with its number."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON: {e}") from e
    else:
        records = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {line_no}: not valid JSON: {e}") from e
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(f"{path}: record {bad + 1} is a {type(records[bad]).__name__}, not a JSON object")
    return pd.DataFrame.from_records(records)


def read_table(path: str | os.PathLike, fmt: str | None = None, str_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV / TSV / JSONL / Parquet file (optionally ``.gz``) into a DataFrame.

    ``str_columns`` of a CSV/TSV are read as text, so ids such as ``"0012"`` or ``"NA"`` survive;
    an empty field is missing (NaN).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    fmt = file_format(path, fmt)
    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=dict.fromkeys(str_columns, str),
                               keep_default_na=False, na_values=[""])
        if fmt == "jsonl":
            return _read_jsonl(path)
        return pd.read_parquet(path)
    except DataError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, EOFError, zlib.error) as e:  # EOFError: a truncated .gz
        raise DataError(f"{path}: could not be read as {fmt} ({type(e).__name__}: {e}); is the file complete?") from e


def _require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(df.columns)}")


def _where(path: Path, fmt: str, row: int) -> str:
    """Human position of data row ``row`` (0-based): CSV/TSV have a header line, JSONL does not."""
    if fmt in ("csv", "tsv"):
        return f"data row {row + 1} (line {row + 2})"
    return f"data row {row + 1} (line {row + 1})" if fmt == "jsonl" else f"data row {row + 1}"


def _check_not_null(df: pd.DataFrame, col: str, path: Path, fmt: str) -> None:
    null = df[col].isna().to_numpy()
    if null.any():
        raise DataError(f"{path}: column '{col}' is empty on {int(null.sum())} row(s), first at {_where(path, fmt, int(null.argmax()))}")


def _timestamps(values: pd.Series, col: str, path: Path, fmt: str) -> np.ndarray:
    """int64 timestamps from numbers or ISO dates (-> Unix seconds); values beyond int64 are an error, never wrapped."""
    if pd.api.types.is_integer_dtype(values):
        if pd.api.types.is_unsigned_integer_dtype(values) and len(values) and values.max() > np.iinfo(np.int64).max:
            row = int(np.argmax(values.to_numpy() > np.iinfo(np.int64).max))
            raise DataError(f"{path}: column '{col}' at {_where(path, fmt, row)}: {values.iloc[row]} is beyond the int64 range "
                            "of timestamps")
        return values.to_numpy(dtype=np.int64)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any() and not values.isna().any():
        try:
            dates = pd.to_datetime(values, utc=True, format="ISO8601")
            return ((dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
        except (ValueError, TypeError):
            pass
    bad = numbers.isna().to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise DataError(f"{path}: column '{col}' is not numeric at {_where(path, fmt, row)}: {values.iloc[row]!r} "
                        f"(timestamps are integers such as Unix seconds, or ISO dates)")
    as_float = numbers.to_numpy(dtype=np.float64)
    huge = np.abs(as_float) >= 2.0 ** 63
    if huge.any():
        row = int(huge.argmax())
        raise DataError(f"{path}: column '{col}' at {_where(path, fmt, row)}: {values.iloc[row]!r} is beyond the int64 range "
                        "of timestamps")
    fractional = as_float != np.floor(as_float)
    if fractional.any():
        row = int(fractional.argmax())
        raise DataError(f"{path}: column '{col}' has a non-integer timestamp at {_where(path, fmt, row)}: {values.iloc[row]!r}; "
                        f"scale it to an integer unit (e.g. milliseconds) so that the order is kept")
    return as_float.astype(np.int64)


DUPLICATES = ("error", "drop", "keep")


def load_interactions(path: str | os.PathLike, user_col: str = "user_id", item_col: str = "item_id",
                      time_col: str | None = "timestamp", fmt: str | None = None, duplicates: str = "error") -> pd.DataFrame:
    """Read an interaction log into the standard columns, in file order.

    Args:
        path: CSV / TSV / JSONL / Parquet file (``.gz`` allowed; format from the suffix or ``fmt``).
        user_col, item_col, time_col: the file's column names for user, item and time. Without
            ``time_col`` the file order is the time order (timestamp = row number).
        fmt: ``"csv"`` | ``"tsv"`` | ``"jsonl"`` | ``"parquet"`` to override the suffix.
        duplicates: rows repeating an earlier row in all of user, item and timestamp: ``"error"``
            (default; the message counts them and names the first), ``"drop"`` (keep the first, with a
            warning that counts them) or ``"keep"``. A duplicate would make an item its own next item.
    Returns:
        DataFrame with ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64).
    """
    path = Path(path)
    fmt = file_format(path, fmt)
    if duplicates not in DUPLICATES:
        raise DataError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    df = read_table(path, fmt, str_columns=(user_col, item_col))
    _require_columns(df, [user_col, item_col] + ([time_col] if time_col else []), path)
    if df.empty:
        raise DataError(f"{path}: no interactions (the file has a header but no rows)")
    for col in (user_col, item_col):
        _check_not_null(df, col, path, fmt)
    out = pd.DataFrame({"user_id": df[user_col].astype(str), "item_id": df[item_col].astype(str)})
    if time_col:
        out["timestamp"] = _timestamps(df[time_col], time_col, path, fmt)
    else:
        out["timestamp"] = np.arange(len(out), dtype=np.int64)
    repeated = out.duplicated().to_numpy() if duplicates != "keep" else np.zeros(len(out), dtype=bool)
    if repeated.any():
        row = int(repeated.argmax())
        if duplicates == "error":
            raise DataError(f"{path}: {int(repeated.sum())} row(s) repeat an earlier row exactly (user, item, timestamp), first at "
                            f"{_where(path, fmt, row)}; remove them, or load with duplicates='drop'")
        logger.warning("%s: dropped %d row(s) repeating an earlier row exactly, first at %s", path, int(repeated.sum()),
                       _where(path, fmt, row))
        out = out[~repeated].reset_index(drop=True)
    return out


def load_items(path: str | os.PathLike, id_col: str = "item_id", fmt: str | None = None) -> pd.DataFrame:
    """Read an item table; ``id_col`` becomes ``item_id`` (str), the other columns are kept as they are.

    Row order = catalogue order. Missing text values are ``None`` (JSON ``null``, empty CSV field).
    Duplicate or empty ids are an error naming them.
    """
    path = Path(path)
    fmt = file_format(path, fmt)
    df = read_table(path, fmt, str_columns=(id_col,))
    _require_columns(df, [id_col], path)
    _check_not_null(df, id_col, path, fmt)
    df = df.rename(columns={id_col: "item_id"})
    df["item_id"] = df["item_id"].astype(str)
    # One spelling of "missing" in text columns: None (pandas would mix NaN and None).
    for col in df.columns:
        if col != "item_id" and (pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    _check_unique_items(df["item_id"], path)
    return df.reset_index(drop=True)


def _check_unique_items(item_ids: pd.Series, where) -> None:
    dup = item_ids[item_ids.duplicated()].unique().tolist()
    if dup:
        raise DataError(f"{where}: duplicate item ids ({len(dup)} id(s) appear more than once): {dup[:10]}{' ...' if len(dup) > 10 else ''}")


@dataclass
class RecDataset:
    """A catalogue and its interaction log.

    Attributes:
        name: dataset name (the folder name for :func:`load_dataset`).
        interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64), in file order.
        items: ``item_id`` (str) + item fields; row order is the catalogue order (item index i = row i).
        path: the dataset folder, or the interactions file for :meth:`from_files` (for messages).

    Every interaction's item must be in ``items``; item ids must be unique (checked on creation).
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    path: Path | None = None

    def __post_init__(self):
        self.path = Path(self.path) if self.path is not None else None
        where = self._interactions_source()
        _require_columns(self.interactions, ["user_id", "item_id", "timestamp"], where)
        _require_columns(self.items, ["item_id"], self.path or self.name)
        _check_unique_items(self.items["item_id"], self.path or self.name)
        unknown = ~self.interactions["item_id"].isin(pd.Index(self.items["item_id"]))
        if unknown.any():
            examples = self.interactions.loc[unknown, "item_id"].unique()[:5].tolist()
            raise DataError(f"{where}: {int(unknown.sum())} interaction(s) reference item ids missing from the item table "
                            f"({self.items['item_id'].size} items), e.g. {examples}")

    def _interactions_source(self) -> str:
        if self.path is None:
            return self.name
        return str(self.path / INTERACTIONS_FILE) if self.path.is_dir() else str(self.path)

    @property
    def item_ids(self) -> list[str]:
        """Item ids in catalogue order."""
        return self.items["item_id"].tolist()

    @property
    def num_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    def __repr__(self) -> str:
        return (f"RecDataset(name={self.name!r}, users={self.num_users}, items={len(self.items)}, "
                f"interactions={len(self.interactions)}, item_fields={[c for c in self.items.columns if c != 'item_id']}, "
                f"path={str(self.path) if self.path else None!r})")

    @classmethod
    def from_files(cls, interactions_path: str | os.PathLike, items_path: str | os.PathLike | None = None, *,
                   name: str | None = None, user_col: str = "user_id", item_col: str = "item_id",
                   time_col: str | None = "timestamp", item_id_col: str | None = None, fmt: str | None = None,
                   items_fmt: str | None = None) -> RecDataset:
        """A dataset from any CSV / TSV / JSONL / Parquet log (+ optional item table), with a column mapping.

        Args:
            interactions_path, user_col, item_col, time_col, fmt: see :func:`load_interactions`.
            items_path: item table; None = the catalogue is the items seen in the log, in order of
                first appearance, with no text fields.
            item_id_col: the item table's id column (default: ``item_col``); ``items_fmt`` its format.
            name: dataset name (default: the interactions file name without suffixes).
        """
        interactions_path = Path(interactions_path)
        interactions = load_interactions(interactions_path, user_col, item_col, time_col, fmt)
        if items_path is None:
            items = pd.DataFrame({"item_id": pd.unique(interactions["item_id"])})
        else:
            items = load_items(items_path, item_id_col or item_col, items_fmt)
        return cls(name or interactions_path.name.split(".")[0], interactions, items, interactions_path)


def load_dataset(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> RecDataset:
    """Load a dataset folder in the standard format.

    Args:
        name_or_path: an existing folder, or a folder name inside the data directory (``"amazon_beauty"``).
        data_dir: see :func:`resolve_data_dir` (only needed for a name).
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        folder = candidate
    else:
        root = resolve_data_dir(data_dir)
        folder = root / str(name_or_path)
        if not folder.is_dir():
            available = sorted(p.name for p in root.iterdir() if (p / INTERACTIONS_FILE).is_file())
            raise DataError(f"dataset folder not found: {folder}; datasets in {root}: {available}")
    interactions = load_interactions(folder / INTERACTIONS_FILE)
    items = load_items(folder / ITEMS_FILE)
    return RecDataset(folder.name, interactions, items, folder)
