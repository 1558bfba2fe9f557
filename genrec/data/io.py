"""Loading interaction logs and item tables, with validation that names the offending file and field.

The standard on-disk format (the shared data folder) is one folder per dataset holding
``interactions.csv.gz`` (``user_id,item_id,timestamp``; rows grouped by user and chronological)
and ``items.jsonl.gz`` (one JSON object per item: ``item_id`` + text fields). Other formats are read
by :func:`load_interactions` / :func:`load_items` with a column mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DATA_DIR_ENV = "GENREC_DATA_DIR"
INTERACTIONS_FILE = "interactions.csv.gz"
ITEMS_FILE = "items.jsonl.gz"


class DataError(ValueError):
    """Input data that cannot be used as is; the message names the file and the problem."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$GENREC_DATA_DIR``."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not value:
        raise DataError(f"no data directory given: pass data_dir=... (or --data-dir) or set the environment variable {DATA_DIR_ENV}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory does not exist: {path}")
    return path


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zst", ".xz")]
    ext = suffixes[-1] if suffixes else ""
    formats = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
    if ext not in formats:
        raise DataError(f"{path}: cannot tell the format from the suffix; pass fmt='csv'|'tsv'|'jsonl'|'parquet'")
    return formats[ext]


def _read_table(path: Path, fmt: str | None, dtype=None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    fmt = _format_of(path, fmt)
    try:
        if fmt == "csv":
            return pd.read_csv(path, dtype=dtype, keep_default_na=False, na_values=[""])
        if fmt == "tsv":
            return pd.read_csv(path, sep="\t", dtype=dtype, keep_default_na=False, na_values=[""])
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=dtype)
        return pd.read_parquet(path)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: could not be read as {fmt}: {e}") from e


def _require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(df.columns)}")


def load_interactions(path, user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = "timestamp", fmt: str | None = None) -> pd.DataFrame:
    """Read an interaction log into columns ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64).

    Without ``time_col`` the row order within each user is the order (timestamp = row number).
    """
    path = Path(path)
    str_cols = {user_col: str, item_col: str}
    df = _read_table(path, fmt, dtype=str_cols if _format_of(path, fmt) in ("csv", "tsv") else None)
    _require_columns(df, [user_col, item_col] + ([time_col] if time_col else []), path)
    out = pd.DataFrame({"user_id": df[user_col].astype(str), "item_id": df[item_col].astype(str)})
    for col in (user_col, item_col):
        bad = df[col].isna()
        if bad.any():
            raise DataError(f"{path}: column '{col}' is empty on {int(bad.sum())} row(s), first at data row {int(bad.idxmax()) + 1}")
    if time_col:
        ts = pd.to_numeric(df[time_col], errors="coerce")
        if ts.isna().any():
            row = int(ts.isna().idxmax())
            raise DataError(f"{path}: column '{time_col}' is not numeric at data row {row + 1}: {df[time_col].iloc[row]!r}")
        out["timestamp"] = ts.astype("int64")
    else:
        out["timestamp"] = range(len(out))
    return out


def load_items(path, id_col: str = "item_id", fmt: str | None = None) -> pd.DataFrame:
    """Read an item table; ``id_col`` becomes ``item_id`` (str). Duplicate ids are an error."""
    path = Path(path)
    df = _read_table(path, fmt)
    _require_columns(df, [id_col], path)
    df = df.rename(columns={id_col: "item_id"})
    df["item_id"] = df["item_id"].astype(str)
    # Missing values are None in every text column (pandas reads JSON nulls as NaN).
    for col in df.columns:
        if col != "item_id" and (pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    dup = df["item_id"][df["item_id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate item ids ({len(dup)}), e.g. {dup.unique()[:5].tolist()}")
    return df.reset_index(drop=True)


@dataclass
class RecDataset:
    """A catalogue and its interaction log.

    Attributes:
        name: dataset name (folder name).
        interactions: columns ``user_id``, ``item_id``, ``timestamp`` in file order.
        items: ``item_id`` + item fields; its row order is the catalogue order (item index i = row i).
        path: where it was read from (for error messages).
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    path: Path | None = None

    @property
    def item_ids(self) -> list[str]:
        return self.items["item_id"].tolist()

    def __post_init__(self):
        known = pd.Index(self.items["item_id"])
        unknown = ~self.interactions["item_id"].isin(known)
        if unknown.any():
            examples = self.interactions.loc[unknown, "item_id"].unique()[:5].tolist()
            where = self.path or self.name
            raise DataError(f"{where}: {int(unknown.sum())} interaction(s) reference item ids missing from the item table, e.g. {examples}")

    @classmethod
    def from_files(cls, interactions_path, items_path=None, *, name: str | None = None, user_col="user_id", item_col="item_id",
                   time_col: str | None = "timestamp", item_id_col: str | None = None, fmt: str | None = None) -> RecDataset:
        """Any CSV/TSV/JSONL/Parquet log (+ optional item table) with a column mapping.

        Without an item table the catalogue is the items seen in the log, in order of first appearance.
        """
        inter = load_interactions(interactions_path, user_col, item_col, time_col, fmt)
        if items_path is None:
            items = pd.DataFrame({"item_id": pd.unique(inter["item_id"])})
        else:
            items = load_items(items_path, item_id_col or item_col)
        return cls(name or Path(interactions_path).parent.name, inter, items, Path(interactions_path))


def load_dataset(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> RecDataset:
    """Load a dataset folder in the standard format.

    ``name_or_path`` is a folder name inside the data directory (``amazon_beauty``) or a path to a folder.
    """
    candidate = Path(name_or_path).expanduser()
    folder = candidate if candidate.is_dir() else resolve_data_dir(data_dir) / str(name_or_path)
    if not folder.is_dir():
        raise DataError(f"dataset folder not found: {folder}")
    inter = load_interactions(folder / INTERACTIONS_FILE)
    items = load_items(folder / ITEMS_FILE)
    return RecDataset(folder.name, inter, items, folder)
