"""``SIDTokenizer``: a fitted quantiser + the item -> SID table, saved and shared like a Hugging Face artifact.

A saved tokenizer is a folder (or a Hub model repo) holding JSON and safetensors only:

    sid_tokenizer_config.json   format_version, method, quantiser config, codebook sizes (dedup level
                                included), embedding model + text template, regularisers, item count,
                                training-data description, quality metrics
    quantizer.safetensors       the quantiser's weights / codebooks / standardisation statistics
    sid_table.safetensors       (N, L+1) int64 SIDs, row i = item i          } the full table: loading
    sid_items.json              the N item ids in row order + level sizes    } never recomputes IDs
    README.md                   generated model card (YAML metadata + description)

Multimodal tokenizers (docs/multimodal.md) read a *packed* input (several feature sources + presence
flags, :mod:`genrec.tokenizer.fusion`): ``embedding_dim`` is the packed width, a learned fusion's
weights are part of ``quantizer.safetensors`` (RQ-VAE ``fusion.*``; ``method: fused`` wraps untrained
quantisers), and the config gains a ``features`` record (sources with their options and attribute
vocabularies, fusion, compatibility source) so new items are featurised and fused the same way.
Single-input artifacts have no ``features`` key and are unchanged.

Loading never executes code and never unpickles: the quantiser class comes from genrec's own registry
by name, tensors from safetensors, everything else from JSON. Folders or repos holding pickle-based
files (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ``*.pickle``, ``*.ckpt``) are refused.

Cold start: :meth:`SIDTokenizer.encode` gives items the tokenizer has not seen deterministic SIDs
from their embeddings. Their dedup code continues the numbering of existing items that share the
same L codes (max existing dedup code + 1, then in batch order), so a new SID never equals an
existing one. If that needs a dedup code >= the dedup level's size, the level grows: the returned
:class:`ColdStartEncoding` says so (``dedup_grown_from``) and a warning is logged, because a model
trained on the old vocabulary then needs new token embeddings for the extra dedup codes.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genrec.tokenizer.hub import download_snapshot, refuse_pickles
from genrec.tokenizer.io import publish_dir
from genrec.tokenizer.metrics import tokenizer_metrics
from genrec.tokenizer.model_card import CARD_FILE, build_model_card
from genrec.tokenizer.random_ids import RandomIDs
from genrec.tokenizer.registry import quantizer_class
from genrec.tokenizer.sid import ITEMS_FILE, TABLE_FILE, SIDTable, add_dedup_codes
from genrec.tokenizer.version import genrec_version

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "sid_tokenizer_config.json"
QUANTIZER_FILE = "quantizer.safetensors"
REQUIRED_FILES = (CONFIG_FILE, QUANTIZER_FILE, TABLE_FILE, ITEMS_FILE)


@dataclass
class ColdStartEncoding:
    """SIDs given to new items by :meth:`SIDTokenizer.encode`.

    Attributes:
        sids: (M, L+1) long, one row per new item, unique and distinct from every SID in the table.
        codebook_sizes: level sizes (dedup included) needed to hold the table and these SIDs.
        dedup_grown_from: the dedup level's previous size if these SIDs needed a larger one, else None.
    """

    sids: torch.Tensor
    codebook_sizes: tuple[int, ...]
    dedup_grown_from: int | None = None


def _json_checked(value, what: str):
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable (plain dicts/lists/numbers/strings): {e}") from e
    return value


def _refuse_pickles(names, where: str) -> None:
    refuse_pickles(names, where, "SID tokenizers")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the file is corrupted or truncated") from e


def _check_shapes_before_allocating(cls, quantizer_config: dict, state: dict, config_path: Path, state_path: Path) -> None:
    """Build the quantiser of ``quantizer_config`` on the meta device (no memory) and compare its tensor shapes with
    the saved weights, so a config whose sizes were tampered with (e.g. huge codebooks) fails before allocating."""
    try:
        with torch.device("meta"):
            probe = cls.from_config(quantizer_config)
    except (ValueError, TypeError):
        raise
    except Exception:  # a quantiser that cannot be built on the meta device: load_state_dict checks the shapes later
        return
    expected = {name: tuple(t.shape) for name, t in probe.state_dict().items()}
    for name, shape in expected.items():
        got = tuple(state[name].shape) if name in state else None
        if got != shape:
            raise ValueError(f"quantizer_config implies tensor {name!r} of shape {shape}, but {state_path.name} holds "
                             f"{got if got is not None else 'no such tensor'} (the config and the weights do not belong together)")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read safetensors ({e}); the file is corrupted or truncated") from e


class SIDTokenizer:
    """Items <-> Semantic IDs: a fitted quantiser plus the saved item -> SID table.

    Build one with :meth:`from_quantizer` after fitting, save it with :meth:`save_pretrained`, share
    it with :meth:`push_to_hub`, load it with :meth:`from_pretrained` (local folder or Hub repo id).

    Args:
        quantizer: a fitted :class:`~genrec.tokenizer.base.Quantizer` with ``get_config``/``state_dict``.
        table: the item -> SID table; its first L levels are the quantiser's, the last the dedup code.
        embedding_dim: d of the item embeddings the quantiser reads.
        embedding_model: name/path of the text-embedding model that produced them (recorded only).
        text_template: the item-text template fed to that model (recorded only).
        regularizers: JSON-able description of the regularisers used in training (recorded only).
        training_data: free-text description of the training catalogue (recorded, shown in the card).
        metrics: JSON-able tokenizer-quality metrics (recorded, shown in the card).
        features: JSON-able record of the feature sources and fusion of a multimodal tokenizer (None:
            a single embedding input); saved only when given.
    """

    def __init__(self, quantizer, table: SIDTable, *, embedding_dim: int, embedding_model: str | None = None,
                 text_template: str | None = None, regularizers=None, training_data: str | None = None, metrics: dict | None = None,
                 features: dict | None = None):
        levels = tuple(int(k) for k in quantizer.codebook_sizes)
        if table.depth != len(levels) + 1 or table.codebook_sizes[:-1] != levels:
            raise ValueError(f"SID table levels {table.codebook_sizes} do not match the quantiser's {levels} + one dedup level")
        self.quantizer = quantizer
        self.table = table
        self.embedding_dim = int(embedding_dim)
        self.embedding_model = embedding_model
        self.text_template = text_template
        self.regularizers = _json_checked(regularizers, "regularizers")
        self.training_data = training_data
        self.metrics = _json_checked(metrics, "metrics")
        self.features = _json_checked(features, "features")

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_quantizer(cls, quantizer, item_ids, embeddings: torch.Tensor, *, embedding_model: str | None = None,
                       text_template: str | None = None, metrics: dict | None = None, regularizers=None,
                       training_data: str | None = None, batch_size: int = 8192, features: dict | None = None) -> SIDTokenizer:
        """Encode the catalogue with a fitted quantiser and build the table (TIGER dedup codes, catalogue order).

        Args:
            item_ids: N item ids (strings), row i of ``embeddings`` is item i.
            embeddings: (N, d) float item embeddings (the quantiser's training input).
            metrics: quality metrics to record; default: :func:`tokenizer_metrics` on the codes (without
                the embedding-based ones, which need the caller's ``x``).
        """
        item_ids = list(item_ids)
        bad = [i for i in item_ids if not isinstance(i, str)]
        if bad:
            raise TypeError(f"item ids must be strings, got e.g. {bad[:3]!r}")
        x = torch.as_tensor(embeddings).float()
        if x.ndim != 2 or x.shape[0] != len(item_ids):
            raise ValueError(f"embeddings must be (N={len(item_ids)}, d), got shape {tuple(x.shape)}")
        codes = quantizer.encode(x, batch_size=batch_size).cpu()
        table = SIDTable.from_codes(item_ids, codes, quantizer.codebook_sizes)
        if metrics is None:
            metrics = tokenizer_metrics(codes, quantizer.codebook_sizes)
        return cls(quantizer, table, embedding_dim=x.shape[1], embedding_model=embedding_model, text_template=text_template,
                   regularizers=regularizers, training_data=training_data, metrics=metrics, features=features)

    # ---- accessors ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, item_id: str) -> bool:
        try:
            self.table.index(item_id)
        except KeyError:
            return False
        return True

    def __repr__(self) -> str:
        return f"SIDTokenizer(method={self.method!r}, items={len(self)}, codebook_sizes={self.codebook_sizes})"

    @property
    def method(self) -> str:
        return self.quantizer.get_config()["method"]

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Size of every SID level, dedup level included (what :class:`genrec.vocab.SIDVocab` takes)."""
        return self.table.codebook_sizes

    @property
    def item_ids(self) -> list[str]:
        return self.table.item_ids

    @property
    def sids(self) -> torch.Tensor:
        """(N, L+1) long, row i = SID of ``item_ids[i]``."""
        return self.table.sids

    def sid(self, item_id: str) -> tuple[int, ...]:
        return self.table.sid(item_id)

    def item(self, sid) -> str:
        return self.table.item(sid)

    @property
    def config(self) -> dict:
        """Everything ``sid_tokenizer_config.json`` holds."""
        state_keys = set(self.quantizer.state_dict())
        standardization = ({"formula": "(x - mean) / std", "tensors": ["mean", "std"], "file": QUANTIZER_FILE}
                           if {"mean", "std"} <= state_keys else None)
        config = {
            "format_version": FORMAT_VERSION,
            "library_name": "genrec",
            "genrec_version": genrec_version(),
            "method": self.method,
            "quantizer_config": self.quantizer.get_config(),
            "codebook_sizes": list(self.codebook_sizes[:-1]),
            "sid_codebook_sizes": list(self.codebook_sizes),
            "sid_length": len(self.codebook_sizes),
            "num_items": len(self),
            "embedding_dim": self.embedding_dim,
            "embedding_model": self.embedding_model,
            "text_template": self.text_template,
            "standardization": standardization,
            "regularizers": self.regularizers,
            "training_data": self.training_data,
            "metrics": self.metrics,
        }
        if self.features is not None:
            config["features"] = self.features
        return config

    # ---- cold start -----------------------------------------------------------------------------------
    def _quantize(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        if isinstance(getattr(self.quantizer, "inner", self.quantizer), RandomIDs):  # also behind a fusion (FusedQuantizer)
            # Random codes depend only on the row: new items take the rows after the catalogue instead of
            # repeating the codes of its first items.
            rows = x.new_zeros(len(self) + x.shape[0], x.shape[1])
            return self.quantizer.encode(rows, batch_size=batch_size)[len(self):]
        return self.quantizer.encode(x, batch_size=batch_size)

    def encode(self, item_embeddings: torch.Tensor, item_ids=None, add_to_table: bool = False,
               batch_size: int = 8192) -> ColdStartEncoding:
        """SIDs for M items the tokenizer has not seen (cold start), from their embeddings.

        Codes come from the quantiser (deterministic); the dedup code continues after the existing
        items sharing the same L codes, then numbers the new items in row order, so the returned SIDs
        are unique and never equal a SID in the table. Without ``add_to_table`` the table is unchanged,
        so two separate calls may hand out the same SID to different new items: add them to reserve it.

        Args:
            item_embeddings: (M, d) float embeddings, produced like the catalogue's (same model and template).
            item_ids: M new item ids (required with ``add_to_table``); ids already in the table are an error
                (use :meth:`sid` for known items).
            add_to_table: append the new items to the table (growing the dedup level if needed).
        """
        x = torch.as_tensor(item_embeddings).float()
        if x.ndim != 2 or x.shape[1] != self.embedding_dim:
            raise ValueError(f"item embeddings must be (M, {self.embedding_dim}), got shape {tuple(x.shape)}")
        bad_rows = torch.nonzero(~torch.isfinite(x).all(dim=1)).flatten()
        if len(bad_rows):
            raise ValueError(f"item embeddings contain NaN/inf in rows {bad_rows[:10].tolist()}")
        if add_to_table and item_ids is None:
            raise ValueError("add_to_table=True needs the new items' ids")
        if item_ids is not None:
            item_ids = list(item_ids)
            if len(item_ids) != x.shape[0]:
                raise ValueError(f"{len(item_ids)} item ids for {x.shape[0]} embeddings")
            bad = [i for i in item_ids if not isinstance(i, str)]
            if bad:
                raise TypeError(f"item ids must be strings, got e.g. {bad[:3]!r}")
            known = [i for i in item_ids if i in self]
            if known:
                raise ValueError(f"{len(known)} item id(s) already have a SID in the table, e.g. {known[:5]}; use .sid(item_id)")
            if len(set(item_ids)) != len(item_ids):
                raise ValueError("duplicate ids among the new items")

        codes = self._quantize(x, batch_size).cpu()  # the table lives on the CPU
        num_levels = codes.shape[1]
        existing = self.sids
        # Group existing and new items by their L codes; a group's next free dedup code is its max + 1.
        _, group = torch.unique(torch.cat([existing[:, :num_levels], codes]), dim=0, return_inverse=True)
        next_free = torch.zeros(int(group.max()) + 1 if len(group) else 0, dtype=torch.long)
        next_free.scatter_reduce_(0, group[: len(existing)], existing[:, -1] + 1, reduce="amax")
        rank_in_batch = add_dedup_codes(codes)[:, -1]
        sids = torch.cat([codes, (next_free[group[len(existing):]] + rank_in_batch)[:, None]], dim=1)

        old_size = self.codebook_sizes[-1]
        needed = int(sids[:, -1].max()) + 1 if len(sids) else 0
        grown_from = old_size if needed > old_size else None
        sizes = self.codebook_sizes[:-1] + (max(old_size, needed),)
        if grown_from is not None:
            logger.warning("cold-start SIDs need dedup codes up to %d: the dedup level grows from %d to %d "
                           "(models trained on the old vocabulary need embeddings for the new codes)", needed - 1, old_size, needed)
        if add_to_table:
            self.table = SIDTable(self.item_ids + item_ids, torch.cat([existing, sids]), sizes)
        return ColdStartEncoding(sids=sids, codebook_sizes=sizes, dedup_grown_from=grown_from)

    # ---- saving -----------------------------------------------------------------------------------------
    def _write_files(self, directory: Path, repo_id: str | None) -> None:
        config = self.config
        state = {k: v.detach().cpu().contiguous() for k, v in self.quantizer.state_dict().items()}
        save_file(state, directory / QUANTIZER_FILE, metadata={"format": "pt"})  # one key: a Rust map, order not stable
        self.table.save(directory)
        build_model_card(config, repo_id=repo_id).save(directory / CARD_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def save_pretrained(self, save_directory: str | Path, *, repo_id: str | None = None) -> Path:
        """Write the tokenizer to ``save_directory`` atomically; returns the folder.

        Everything is written to a temporary folder next to the target first. A new (or empty)
        target is then replaced by one rename, so readers see all files or none. In an existing,
        non-empty folder (e.g. a run folder with logs) each file is replaced atomically, the config
        last; a crash in between leaves a mismatch that loading reports rather than a silent mix.

        Args:
            repo_id: Hub repo id to name in the model card (set by :meth:`push_to_hub`).
        """
        target = Path(save_directory)
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{target} exists and is not a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            self._write_files(staging, repo_id)
            publish_dir(staging, target, (QUANTIZER_FILE, TABLE_FILE, ITEMS_FILE, CARD_FILE, CONFIG_FILE))  # config last
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload genrec SID tokenizer", private: bool | None = None,
                    token: str | None = None, branch: str | None = None, create_pr: bool | None = None):
        """Create ``repo_id`` if needed (model repo) and upload the saved tokenizer in one commit.

        Uses ``huggingface_hub.HfApi`` (``create_repo`` + ``upload_folder``); the endpoint comes from
        ``HF_ENDPOINT``, the token from ``token`` / ``HF_TOKEN`` / the saved login. Returns the
        ``CommitInfo`` (a ``str`` subclass holding the commit URL; ``.oid`` is the commit hash).
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory(prefix="genrec-sid-tokenizer-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "tokenizer", repo_id=repo_id)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                     revision=branch, create_pr=create_pr)

    # ---- loading ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, force_download: bool = False, token: str | bool | None = None,
                        local_files_only: bool = False) -> SIDTokenizer:
        """Load from a local folder written by :meth:`save_pretrained`, or from a Hub model repo id.

        Hub repos: the file list at the resolved revision is checked first (pickle files refused,
        required files present), then only the artifact's files are downloaded with
        ``snapshot_download`` (cached; ``local_files_only`` / ``HF_HUB_OFFLINE=1`` use the cache).
        """
        path = Path(pretrained_model_name_or_path).expanduser()
        if path.is_dir():
            if revision is not None:
                raise ValueError(f"revision={revision!r} applies to Hub repos, but {path} is a local folder")
            return cls._load_folder(path, where=str(path))
        folder = _download(str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
                           force_download=force_download, token=token, local_files_only=local_files_only)
        return cls._load_folder(folder, where=f"Hub repo {pretrained_model_name_or_path} ({folder})")

    @classmethod
    def _load_folder(cls, folder: Path, where: str) -> SIDTokenizer:
        _refuse_pickles([str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()], where)
        for name in REQUIRED_FILES:
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{where}: missing file {name} (a SID tokenizer needs {list(REQUIRED_FILES)})")

        config_path = folder / CONFIG_FILE
        config = _read_json(config_path)
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a JSON object")
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{config_path}: unsupported format_version {version!r}; this genrec reads version {FORMAT_VERSION}")
        missing = [k for k in ("quantizer_config", "sid_codebook_sizes", "num_items", "embedding_dim") if k not in config]
        if missing:
            raise ValueError(f"{config_path}: missing key(s) {missing}")

        quantizer_config = config["quantizer_config"]
        method = quantizer_config.get("method") if isinstance(quantizer_config, dict) else None
        state_path = folder / QUANTIZER_FILE
        state = _read_safetensors(state_path)
        broken = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if broken:
            raise ValueError(f"{state_path}: tensor(s) {broken[:5]} hold NaN or infinite values; the quantiser would map "
                             "every new item to one SID (a diverged or damaged fit)")
        try:
            _check_shapes_before_allocating(quantizer_class(method), quantizer_config, state, config_path, state_path)
            quantizer = quantizer_class(method).from_config(quantizer_config)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{config_path}: cannot build quantiser {method!r} from quantizer_config: {e}") from e
        try:
            quantizer.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as e:
            raise ValueError(f"{state_path}: weights do not fit the {method!r} quantiser of {CONFIG_FILE}: {e}") from e

        table_path, items_path = folder / TABLE_FILE, folder / ITEMS_FILE
        tensors = _read_safetensors(table_path)
        sids = tensors.get("sids")
        sizes = [int(k) for k in config["sid_codebook_sizes"]]
        if sids is None or sids.dtype != torch.int64 or sids.ndim != 2 or sids.shape[1] != len(sizes):
            got = None if sids is None else f"{sids.dtype} {tuple(sids.shape)}"
            raise ValueError(f"{table_path}: expected tensor 'sids' int64 of shape (N, {len(sizes)}), got {got}")
        items = _read_json(items_path)
        if not isinstance(items, dict) or not isinstance(items.get("item_ids"), list):
            raise ValueError(f"{items_path}: expected a JSON object with an 'item_ids' list")
        item_ids = items["item_ids"]
        if any(not isinstance(i, str) for i in item_ids):
            raise ValueError(f"{items_path}: item ids must be strings")
        if items.get("codebook_sizes") is not None and [int(k) for k in items["codebook_sizes"]] != sizes:
            raise ValueError(f"{items_path}: codebook_sizes {items['codebook_sizes']} differ from {CONFIG_FILE}'s {sizes}")
        if len(item_ids) != config["num_items"] or sids.shape[0] != config["num_items"]:
            raise ValueError(f"{table_path}: {sids.shape[0]} SID rows and {len(item_ids)} ids in {ITEMS_FILE}, "
                             f"but {CONFIG_FILE} says num_items={config['num_items']} (partial or mixed files)")
        try:
            table = SIDTable(item_ids, sids, sizes)
        except ValueError as e:
            raise ValueError(f"{table_path}: {e}") from e
        try:
            return cls(quantizer, table, embedding_dim=config["embedding_dim"], embedding_model=config.get("embedding_model"),
                       text_template=config.get("text_template"), regularizers=config.get("regularizers"),
                       training_data=config.get("training_data"), metrics=config.get("metrics"), features=config.get("features"))
        except ValueError as e:
            raise ValueError(f"{config_path}: {e}") from e


def _download(repo_id: str, *, revision, cache_dir, force_download: bool, token, local_files_only: bool) -> Path:
    """Snapshot of the artifact's files of a Hub repo (after checking the repo's file list)."""
    return download_snapshot(repo_id, required=REQUIRED_FILES, allow_patterns=[*REQUIRED_FILES, CARD_FILE], what="SID tokenizers",
                             revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
                             local_files_only=local_files_only)


__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "QUANTIZER_FILE", "ColdStartEncoding", "SIDTokenizer"]
