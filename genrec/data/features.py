"""Item feature sources for multimodal tokenizer input: text embeddings, categorical attributes, vector files.

Each source turns the item table into an :class:`ItemFeatures`: ``values`` (N, d) float32 in
catalogue order, ``present`` (N,) bool, and ``info`` (a JSON-able record of what was built). Items
a source has nothing for are *missing*: their row is zero and ``present`` is False. What happens to
them is a per-source setting, ``on_missing``:

- ``"error"`` (default): a :class:`~genrec.data.io.DataError` naming the items (count + first ids);
- ``"placeholder"``: they stay missing; the count and a few ids are logged and recorded in ``info``
  (``missing``, ``missing_examples``). The fusion (:mod:`genrec.tokenizer.fusion`) gives them the
  source's placeholder, learned or the catalogue mean: never a silent zero vector.

Sources (``kind``; build them from config dicts with :func:`build_features`):

- ``text`` (:class:`TextFeatures`): a sentence-transformers embedding of the item text rendered from
  ``template`` (see :mod:`genrec.data.text`; default: the dataset's default template) by ``model``
  (default all-MiniLM-L6-v2), cached on disk by model and text (:func:`genrec.data.embed_texts`).
  Several text sources may coexist (title vs categories, two models). An item whose template renders
  nothing is missing; ``on_missing: item_id`` embeds ``"Item <id>"`` for it instead (the recipe's
  ``on_empty_text`` behaviour).
- ``attributes`` (:class:`AttributeFeatures`): a multi-hot vector over the values of one or more
  categorical columns (``brand``, ``categories``, ``genres``, ...). A list-valued column (the item
  table stores ``categories``/``genres`` as JSON lists) contributes one value per element; a numeric
  column (``year``) is bucketed, ``bucket_width`` wide (default 10: ``year=[1990,2000)``). A value
  is the token ``"<column>=<value>"``. Values in ``ignore_values`` count as missing (e.g. Beauty's
  ``"Unknown"`` brand); values seen in fewer than ``min_count`` items (default 2: a value only one
  item has says nothing shared) are dropped, and ``max_values`` keeps the most frequent. An item with
  no kept value is missing. The vocabulary is recorded in ``info`` and can be passed back
  (``vocabulary=``) to encode new items identically. No cache: building it takes milliseconds.
  *Learned* attribute embeddings are this multi-hot behind a learned projection (``fusion: projection``:
  a linear map of a multi-hot is a sum of per-value embeddings, an embedding bag).
- ``vectors`` (:class:`VectorFileFeatures`): precomputed vectors keyed by item id (image or video
  embeddings, anything), from

  - ``.npy``: a float (M, d) array, plus the M ids in ``ids_path`` (a JSON list, a ``.txt`` file with
    one id per line, or a ``.npy`` array of strings or ints); without ``ids_path``, the file
    ``<name>.ids.json`` or ``<name>.ids.txt`` next to ``<name>.npy`` is used;
  - ``.npz``: arrays ``ids`` (strings or ints) and ``vectors`` (or the array named by ``key``);
  - ``.safetensors``: the tensor ``key`` (default ``embeddings``, or the only tensor in the file) and
    the ids as a JSON list in the file's metadata under ``item_ids`` (or an ``ids_path`` file);
  - Parquet (``.parquet``/``.pq``): an id column (``id_column``, default ``item_id``) and either one
    list/array column (``vector_column``; default ``embedding``, or the only other column) or, when
    every other column is a numeric scalar, those columns in order (a wide table).

  Nothing is unpickled (``allow_pickle=False``). Checks, each an error naming the file and offending
  ids: rows and ids of different lengths, duplicate ids, a dimension other than ``dim`` (when given),
  ragged Parquet lists, NaN/inf rows (``nan_rows: missing`` makes them missing instead, counted),
  all-zero rows (they cannot be normalised; leave such items out of the file instead), and catalogue
  items absent from the file (unless ``on_missing: placeholder``). Ids in the file that the catalogue
  lacks are ignored and counted (``extra_ids`` in ``info``). Ids are compared as strings (an integer
  id 42 matches item ``"42"``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genrec.data.embed import embed_texts
from genrec.data.io import DataError
from genrec.data.text import default_template, item_texts

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("text", "attributes", "vectors")
ON_MISSING = ("error", "placeholder")
_EXAMPLES = 10


def _ids_text(ids: list, limit: int = _EXAMPLES) -> str:
    return f"{list(ids[:limit])}{' ...' if len(ids) > limit else ''}"


@dataclass
class ItemFeatures:
    """One feature source, built for a catalogue.

    Attributes:
        name: the source's name (unique within a tokenizer config).
        kind: ``text`` | ``attributes`` | ``vectors`` (or anything a user source calls itself).
        values: (N, d) float32, row i = catalogue item i; zero where ``present`` is False.
        present: (N,) bool, False = the item lacks this source (missing modality).
        info: JSON-able record (options, dimension, counts of missing items, vocabulary, file, ...).
    """

    name: str
    kind: str
    values: torch.Tensor
    present: torch.Tensor
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.values = torch.as_tensor(self.values, dtype=torch.float32)
        self.present = torch.as_tensor(self.present, dtype=torch.bool)
        if self.values.ndim != 2 or self.present.shape != (self.values.shape[0],):
            raise ValueError(f"source '{self.name}': values must be (N, d) and present (N,), got {tuple(self.values.shape)} "
                             f"and {tuple(self.present.shape)}")
        bad = ~torch.isfinite(self.values).all(dim=1)
        if bad.any():
            raise ValueError(f"source '{self.name}': NaN/inf in rows {torch.nonzero(bad).flatten()[:_EXAMPLES].tolist()}")
        self.values = self.values * self.present[:, None]

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def num_missing(self) -> int:
        return int((~self.present).sum())


def _check_on_missing(name: str, value: str, allowed=ON_MISSING) -> str:
    if value not in allowed:
        raise DataError(f"source '{name}': on_missing must be one of {list(allowed)}, got {value!r}")
    return value


def _handle_missing(name: str, what: str, item_ids: list[str], present: np.ndarray, on_missing: str, where: str = "",
                    hint: str = "placeholder") -> dict:
    """Raise (on_missing='error') or log and return the counts for the missing items."""
    missing = [item_ids[i] for i in np.flatnonzero(~present)]
    if missing and on_missing == "error":
        raise DataError(f"source '{name}'{where}: {len(missing)} of {len(item_ids)} item(s) have no {what}: {_ids_text(missing)}; "
                        f"set on_missing: {hint} to give them the source's placeholder (counted and logged)")
    if missing:
        logger.warning("source '%s': %d of %d item(s) have no %s; they get the source's placeholder (e.g. %s)",
                       name, len(missing), len(item_ids), what, missing[:3])
    return {"missing": len(missing), "missing_examples": missing[:_EXAMPLES]}


# ---- text -----------------------------------------------------------------------------------------------
class _DropTextWarning(logging.Filter):
    def filter(self, record):  # item_texts' "using 'Item <id>'" line does not apply to placeholders
        return "have no text; using 'Item <item_id>'" not in record.getMessage()


@contextlib.contextmanager
def _quiet_text_warning():
    text_logger = logging.getLogger("genrec.data.text")
    flt = _DropTextWarning()
    text_logger.addFilter(flt)
    try:
        yield
    finally:
        text_logger.removeFilter(flt)


@dataclass
class TextFeatures:
    """Sentence-transformers embedding of a templated item text (see the module docstring).

    Args:
        name: source name.
        template: item-text template (None = :func:`genrec.data.text.default_template` of the table).
        model: local sentence-transformers folder or model name (None = all-MiniLM-L6-v2).
        cache_dir: embedding cache root (None = ``$GENREC_CACHE_DIR`` or ``~/.cache/genrec``).
        on_missing: ``error`` | ``placeholder`` | ``item_id`` (embed ``"Item <id>"``).
        batch_size, device, show_progress: passed to :func:`genrec.data.embed_texts`.
    """

    name: str = "text"
    template: str | None = None
    model: str | None = None
    cache_dir: str | None = None
    on_missing: str = "error"
    batch_size: int = 256
    device: str | None = None
    show_progress: bool = False
    kind = "text"

    def build(self, items: pd.DataFrame) -> ItemFeatures:
        _check_on_missing(self.name, self.on_missing, (*ON_MISSING, "item_id"))
        template = self.template if self.template is not None else default_template(items)
        with _quiet_text_warning() if self.on_missing != "item_id" else contextlib.nullcontext():
            texts, empty = item_texts(items, template, on_empty="item_id", return_empty=True)
        item_ids = items["item_id"].astype(str).tolist()
        empty_set = set(empty)
        present = np.array([self.on_missing == "item_id" or i not in empty_set for i in item_ids], dtype=bool)
        info = {"kind": "text", "template": template, "model": self.model, "on_missing": self.on_missing,
                "empty_texts": len(empty)}
        info.update(_handle_missing(self.name, f"text for the template {template!r}", item_ids, present,
                                    "placeholder" if self.on_missing == "item_id" else self.on_missing,
                                    hint="placeholder (or item_id: embed 'Item <id>')"))
        rows = np.flatnonzero(present)
        if len(rows) == 0:
            raise DataError(f"source '{self.name}': no item has text for the template {template!r}")
        vectors = embed_texts([texts[i] for i in rows], model=self.model, cache_dir=self.cache_dir, batch_size=self.batch_size,
                              device=self.device, show_progress=self.show_progress)
        values = np.zeros((len(item_ids), vectors.shape[1]), dtype=np.float32)
        values[rows] = vectors
        info["dim"] = int(values.shape[1])
        return ItemFeatures(self.name, "text", torch.from_numpy(values), torch.from_numpy(present), info)


# ---- categorical attributes -------------------------------------------------------------------------------
def _is_missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _elements(value) -> list:
    if isinstance(value, (list, tuple, np.ndarray)):
        out = []
        for v in value:
            out.extend(_elements(v))
        return out
    return [] if _is_missing(value) else [value]


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class AttributeFeatures:
    """Multi-hot over the values of categorical columns (see the module docstring).

    Args:
        name: source name.
        columns: item-table columns (list-valued columns give one value per element).
        min_count: drop values seen in fewer items (default 2).
        max_values: keep only the most frequent values (None = all).
        bucket_width: width of the buckets of numeric columns, one number for all or a mapping
            column -> width (default 10).
        ignore_values: values that count as missing (compared as stripped strings), e.g. ``["Unknown"]``.
        on_missing: ``error`` | ``placeholder`` for items with no kept value.
        vocabulary: fixed token list (from a saved record); then ``min_count``/``max_values`` are not applied.
    """

    name: str = "attributes"
    columns: list[str] = field(default_factory=list)
    min_count: int = 2
    max_values: int | None = None
    bucket_width: float | dict = 10
    ignore_values: list = field(default_factory=list)
    on_missing: str = "error"
    vocabulary: list[str] | None = None
    kind = "attributes"

    def _width(self, column: str) -> float:
        width = self.bucket_width.get(column, 10) if isinstance(self.bucket_width, dict) else self.bucket_width
        if not _is_number(width) or width <= 0:
            raise DataError(f"source '{self.name}': bucket_width for '{column}' must be a positive number, got {width!r}")
        return float(width)

    def tokens(self, items: pd.DataFrame) -> list[list[str]]:
        """Each item's distinct tokens ``"<column>=<value>"``, before any vocabulary cut."""
        if isinstance(self.columns, str) or not self.columns:
            raise DataError(f"source '{self.name}': columns must be a non-empty list of item columns, got {self.columns!r}")
        unknown = [c for c in self.columns if c not in items.columns]
        if unknown:
            raise DataError(f"source '{self.name}': the item table has no column(s) {unknown}; columns: {list(items.columns)}")
        ignored = {str(v).strip() for v in self.ignore_values}
        per_item: list[list[str]] = [[] for _ in range(len(items))]
        for column in self.columns:
            values = items[column].tolist()
            numeric = all(_is_number(v) for value in values for v in _elements(value))
            width = self._width(column) if numeric else None
            for row, value in enumerate(values):
                for v in _elements(value):
                    if numeric:
                        low = math.floor(float(v) / width) * width
                        token_value = f"[{_number_text(low)},{_number_text(low + width)})"
                        if _number_text(v) in ignored:
                            continue
                    else:
                        token_value = str(v).strip()
                        if token_value in ignored:
                            continue
                    token = f"{column}={token_value}"
                    if token not in per_item[row]:
                        per_item[row].append(token)
        return per_item

    def build(self, items: pd.DataFrame) -> ItemFeatures:
        _check_on_missing(self.name, self.on_missing)
        per_item = self.tokens(items)
        counts = Counter(t for tokens in per_item for t in tokens)
        if self.vocabulary is not None:
            vocabulary = [str(t) for t in self.vocabulary]
            if len(set(vocabulary)) != len(vocabulary):
                raise DataError(f"source '{self.name}': the given vocabulary repeats values")
            dropped = sorted(set(counts) - set(vocabulary))
        else:
            if int(self.min_count) < 1:
                raise DataError(f"source '{self.name}': min_count must be >= 1, got {self.min_count}")
            kept = sorted((t for t, c in counts.items() if c >= self.min_count), key=lambda t: (-counts[t], t))
            if self.max_values is not None:
                kept = kept[: int(self.max_values)]
            vocabulary = sorted(kept)
            dropped = sorted(set(counts) - set(vocabulary))
        if not vocabulary:
            raise DataError(f"source '{self.name}': no value of {self.columns} is kept (min_count={self.min_count}, "
                            f"{len(counts)} distinct value(s))")
        index = {t: i for i, t in enumerate(vocabulary)}
        values = np.zeros((len(per_item), len(vocabulary)), dtype=np.float32)
        for row, tokens in enumerate(per_item):
            for t in tokens:
                if t in index:
                    values[row, index[t]] = 1.0
        present = values.any(axis=1)
        item_ids = items["item_id"].astype(str).tolist()
        info = {"kind": "attributes", "columns": list(self.columns), "min_count": self.min_count, "max_values": self.max_values,
                "bucket_width": self.bucket_width, "ignore_values": list(self.ignore_values), "on_missing": self.on_missing,
                "dim": len(vocabulary), "dropped_values": len(dropped), "dropped_examples": dropped[:_EXAMPLES],
                "per_column": {c: sum(t.startswith(f"{c}=") for t in vocabulary) for c in self.columns}}
        info.update(_handle_missing(self.name, f"kept value in {self.columns}", item_ids, present, self.on_missing))
        info["vocabulary"] = vocabulary
        logger.info("source '%s': %d value(s) from %s (%d rarer than min_count dropped), %d item(s) missing",
                    self.name, len(vocabulary), self.columns, len(dropped), info["missing"])
        return ItemFeatures(self.name, "attributes", torch.from_numpy(values), torch.from_numpy(present), info)


# ---- user vector files -------------------------------------------------------------------------------------
def _as_id(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"ids file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON: {e}") from e
        if not isinstance(ids, list):
            raise DataError(f"{path}: expected a JSON list of item ids")
        return [_as_id(i) for i in ids]
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: cannot read the ids without unpickling ({e}); save them as a string or int array") from e
        return [_as_id(i) for i in arr.reshape(-1).tolist()]
    if suffix == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise DataError(f"{path}: ids file must be .json (a list), .txt (one id per line) or .npy")


@dataclass
class VectorFileFeatures:
    """Precomputed vectors keyed by item id (see the module docstring for the formats).

    Args:
        name: source name.
        path: the vector file (relative paths resolve against ``base_dir`` when given, else the working directory).
        ids_path: ids file for ``.npy`` (and optionally ``.safetensors``).
        key: array/tensor name in ``.npz`` / ``.safetensors``.
        id_column, vector_column: Parquet columns.
        dim: expected dimension (None = whatever the file has).
        on_missing: ``error`` | ``placeholder`` for catalogue items absent from the file.
        nan_rows: ``error`` | ``missing`` for rows with NaN/inf.
        base_dir: folder for relative paths.
    """

    name: str = "vectors"
    path: str = ""
    ids_path: str | None = None
    key: str | None = None
    id_column: str = "item_id"
    vector_column: str | None = None
    dim: int | None = None
    on_missing: str = "error"
    nan_rows: str = "error"
    base_dir: str | None = None
    kind = "vectors"

    def _resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() or self.base_dir is None else Path(self.base_dir) / path

    def read(self) -> tuple[list[str], np.ndarray, Path]:
        """(ids, (M, d) float32 matrix, path) from the file, before any check against the catalogue."""
        if not self.path:
            raise DataError(f"source '{self.name}': kind 'vectors' needs path: <file .npy/.npz/.safetensors/.parquet>")
        path = self._resolve(self.path)
        if not path.is_file():
            raise DataError(f"source '{self.name}': vector file not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            ids, matrix = self._read_npy(path)
        elif suffix == ".npz":
            ids, matrix = self._read_npz(path)
        elif suffix == ".safetensors":
            ids, matrix = self._read_safetensors(path)
        elif suffix in (".parquet", ".pq"):
            ids, matrix = self._read_parquet(path)
        else:
            raise DataError(f"{path}: unknown vector file type '{suffix}'; use .npy (+ ids file), .npz, .safetensors or .parquet")
        matrix = np.asarray(matrix)
        if matrix.ndim != 2:
            raise DataError(f"{path}: vectors must be a 2-D (items, dim) array, got shape {matrix.shape}")
        if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
            raise DataError(f"{path}: vectors must be numeric, got dtype {matrix.dtype}")
        if len(ids) != matrix.shape[0]:
            raise DataError(f"{path}: {matrix.shape[0]} vector row(s) but {len(ids)} id(s)")
        return ids, matrix.astype(np.float32, copy=False), path

    def _default_ids_path(self, path: Path) -> Path:
        if self.ids_path is not None:
            return self._resolve(self.ids_path)
        for suffix in (".ids.json", ".ids.txt"):
            candidate = path.with_name(path.name[: -len(path.suffix)] + suffix)
            if candidate.is_file():
                return candidate
        raise DataError(f"{path}: a .npy file needs its item ids: pass ids_path (a JSON list, a .txt file with one id per "
                        f"line, or a .npy of strings/ints) or put {path.stem}.ids.json next to it")

    def _read_npy(self, path: Path):
        try:
            matrix = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: cannot read without unpickling ({e})") from e
        return _read_ids(self._default_ids_path(path)), matrix

    def _read_npz(self, path: Path):
        try:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                key = self.key or "vectors"
                if "ids" not in names or key not in names:
                    raise DataError(f"{path}: a .npz needs arrays 'ids' and '{key}'; it has {names}")
                return [_as_id(i) for i in archive["ids"].reshape(-1).tolist()], archive[key]
        except ValueError as e:
            raise DataError(f"{path}: cannot read without unpickling ({e})") from e

    def _read_safetensors(self, path: Path):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                names = list(f.keys())
                metadata = f.metadata() or {}
                key = self.key or ("embeddings" if "embeddings" in names else (names[0] if len(names) == 1 else None))
                if key is None or key not in names:
                    raise DataError(f"{path}: name the tensor with key: (tensors in the file: {names})")
                matrix = f.get_tensor(key)
        except SafetensorError as e:
            raise DataError(f"{path}: cannot read safetensors: {e}") from e
        if self.ids_path is not None:
            return _read_ids(self._resolve(self.ids_path)), matrix
        if "item_ids" not in metadata:
            raise DataError(f"{path}: no item ids: store them as a JSON list in the metadata "
                            f"(save_file(..., metadata={{'item_ids': json.dumps(ids)}})) or pass ids_path")
        try:
            ids = json.loads(metadata["item_ids"])
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: metadata 'item_ids' is not a JSON list: {e}") from e
        if not isinstance(ids, list):
            raise DataError(f"{path}: metadata 'item_ids' must be a JSON list")
        return [_as_id(i) for i in ids], matrix

    def _read_parquet(self, path: Path):
        try:
            df = pd.read_parquet(path)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: could not be read as Parquet: {e}") from e
        if self.id_column not in df.columns:
            raise DataError(f"{path}: no id column '{self.id_column}'; columns: {list(df.columns)} (set id_column)")
        ids = [_as_id(i) for i in df[self.id_column].tolist()]
        others = [c for c in df.columns if c != self.id_column]
        column = self.vector_column or ("embedding" if "embedding" in others else None)
        if column is None and others and all(pd.api.types.is_numeric_dtype(df[c]) for c in others):
            return ids, df[others].to_numpy(dtype=np.float32)  # wide table: one column per dimension
        if column is None and len(others) == 1:
            column = others[0]
        if column is None or column not in df.columns:
            raise DataError(f"{path}: name the vector column with vector_column (columns: {list(df.columns)})")
        rows = df[column].tolist()
        lengths = np.array([len(r) if isinstance(r, (list, tuple, np.ndarray)) else -1 for r in rows])
        if len(rows) and (lengths < 0).any():
            bad = [ids[i] for i in np.flatnonzero(lengths < 0)]
            raise DataError(f"{path}: column '{column}' must hold one list/array per row; not a list for ids {_ids_text(bad)}")
        if len(rows) and (lengths != lengths[0]).any():
            common = Counter(lengths.tolist()).most_common(1)[0][0]
            bad = [ids[i] for i in np.flatnonzero(lengths != common)]
            raise DataError(f"{path}: vectors of different lengths in '{column}' (most have {common}); other lengths for ids "
                            f"{_ids_text(bad)}")
        matrix = np.asarray([np.asarray(r, dtype=np.float32) for r in rows], dtype=np.float32)
        return ids, matrix.reshape(len(rows), int(lengths[0]) if len(rows) else 0)

    def build(self, items: pd.DataFrame) -> ItemFeatures:
        _check_on_missing(self.name, self.on_missing)
        if self.nan_rows not in ("error", "missing"):
            raise DataError(f"source '{self.name}': nan_rows must be 'error' or 'missing', got {self.nan_rows!r}")
        ids, matrix, path = self.read()
        where = f" ({path})"
        if self.dim is not None and matrix.shape[1] != int(self.dim):
            raise DataError(f"{path}: vectors have dimension {matrix.shape[1]}, source '{self.name}' expects dim={self.dim}")
        counts = Counter(ids)
        duplicated = [i for i, c in counts.items() if c > 1]
        if duplicated:
            raise DataError(f"{path}: {len(duplicated)} duplicate item id(s): {_ids_text(duplicated)}")
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            bad = [ids[i] for i in np.flatnonzero(~finite)]
            if self.nan_rows == "error":
                raise DataError(f"{path}: NaN/inf in the vectors of {len(bad)} item(s): {_ids_text(bad)} "
                                f"(nan_rows: missing treats them as missing)")
            logger.warning("source '%s': %d row(s) of %s hold NaN/inf; those items are treated as missing (e.g. %s)",
                           self.name, len(bad), path, bad[:3])
        zero = finite & ~np.any(matrix != 0, axis=1)
        if zero.any():
            bad = [ids[i] for i in np.flatnonzero(zero)]
            raise DataError(f"{path}: all-zero vectors for {len(bad)} item(s): {_ids_text(bad)} (they cannot be normalised; "
                            f"leave those items out of the file and set on_missing: placeholder)")
        item_ids = items["item_id"].astype(str).tolist()
        row_of = {i: r for r, i in enumerate(ids)}
        catalogue = set(item_ids)
        extra = [i for i in ids if i not in catalogue]
        if extra:
            logger.info("source '%s': %d id(s) in %s are not in the catalogue and are ignored (e.g. %s)", self.name, len(extra), path, extra[:3])
        rows = np.array([row_of.get(i, -1) for i in item_ids])
        present = rows >= 0
        present[present] &= finite[rows[present]]
        values = np.zeros((len(item_ids), matrix.shape[1]), dtype=np.float32)
        values[present] = matrix[rows[present]]
        info = {"kind": "vectors", "path": str(path), "format": path.suffix.lower().lstrip("."), "dim": int(matrix.shape[1]),
                "rows_in_file": int(matrix.shape[0]), "extra_ids": len(extra), "nan_rows": int((~finite).sum()),
                "on_missing": self.on_missing}
        info.update(_handle_missing(self.name, "vector", item_ids, present, self.on_missing, where))
        return ItemFeatures(self.name, "vectors", torch.from_numpy(values), torch.from_numpy(present), info)


SOURCE_CLASSES = {"text": TextFeatures, "attributes": AttributeFeatures, "vectors": VectorFileFeatures}


def feature_source(name: str, spec: dict, **defaults):
    """The source object for one config entry ``spec`` (``kind`` + options); ``defaults`` fill options
    the spec leaves out when the kind accepts them (e.g. ``cache_dir``, ``base_dir``, ``on_missing``)."""
    if not isinstance(spec, dict):
        raise DataError(f"feature source '{name}': expected a mapping with 'kind' and options, got {spec!r}")
    spec = dict(spec)
    kind = spec.pop("kind", None)
    spec.pop("name", None)
    if kind not in SOURCE_CLASSES:
        raise DataError(f"feature source '{name}': kind must be one of {list(SOURCE_CLASSES)}, got {kind!r}")
    cls = SOURCE_CLASSES[kind]
    allowed = [f for f in cls.__dataclass_fields__ if f != "name"]
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise DataError(f"feature source '{name}' (kind {kind}): unknown option(s) {unknown}; valid: {allowed}")
    for key, value in defaults.items():
        if key in allowed and key not in spec and value is not None:
            spec[key] = value
    return cls(name=name, **spec)


def normalize_specs(specs) -> dict[str, dict]:
    """``{name: spec}`` from a mapping (``None`` entries are disabled sources) or a list of specs with ``name``."""
    if isinstance(specs, dict):
        return {str(name): spec for name, spec in specs.items() if spec is not None}
    if isinstance(specs, (list, tuple)):
        out: dict[str, dict] = {}
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict) or "name" not in spec:
                raise DataError(f"features[{i}]: each source needs a name (and a kind), got {spec!r}")
            if spec["name"] in out:
                raise DataError(f"features: two sources are named '{spec['name']}'")
            out[str(spec["name"])] = {k: v for k, v in spec.items() if k != "name"}
        return out
    raise DataError(f"features: expected a mapping name -> source or a list of sources, got {type(specs).__name__}")


def build_features(items: pd.DataFrame, specs, **defaults) -> list[ItemFeatures]:
    """Every source of ``specs`` (mapping name -> spec, or a list of specs with ``name``), in order.

    ``defaults`` (``cache_dir``, ``base_dir``, ``on_missing``, ...) fill options the specs leave out.
    A saved record's ``sources`` (specs with attribute vocabularies) rebuild the same features for
    new items.
    """
    specs = normalize_specs(specs)
    if not specs:
        raise DataError("features: no source given")
    return [feature_source(name, spec, **defaults).build(items) for name, spec in specs.items()]


__all__ = ["ON_MISSING", "SOURCE_KINDS", "AttributeFeatures", "ItemFeatures", "TextFeatures", "VectorFileFeatures",
           "build_features", "feature_source", "normalize_specs"]
