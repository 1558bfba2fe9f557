"""Collaborative (CF) item embeddings from the training split, for contrastive alignment of Semantic IDs.

:func:`train_cf_embeddings` receives only the users' *training* sequences (item indices; with the
leave-one-out protocol, ``SplitData.train_item_sequences()``, which holds neither the validation nor
the test target) and trains, in torch, deterministically by seed:

- ``method="mf"`` (default): implicit matrix factorisation of the item co-occurrence matrix, the
  skip-gram-with-negative-sampling objective (item2vec): every ordered pair of distinct items at
  most ``window`` positions apart in a user's sequence is a positive, ``negatives`` items drawn from
  the unigram^0.75 distribution of the pairs are negatives; the item vectors are the result.
- ``method="bpr"``: BPR matrix factorisation on (user, item) interactions, one uniformly drawn
  negative item per positive; the item factors are the result.

Items that receive no training signal (no co-occurrence pair for ``mf``, no interaction for ``bpr``)
keep an all-zero row and ``covered[i] = False``; their number is logged and returned, and
:class:`~genrec.tokenizer.regularizers.DualTowerContrastive` leaves them out of its term (counted).

Results are cached (``<cache root>/cf/<method>-d<dim>-<key>.safetensors``; root = ``cache_dir``,
else ``$GENREC_CACHE_DIR``, else ``~/.cache/genrec``), the key being a sha256 of the sequences, the
number of items and every hyper-parameter; files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from genrec.tokenizer.io import atomic_save_safetensors

logger = logging.getLogger(__name__)

CACHE_ENV = "GENREC_CACHE_DIR"
METHODS = ("mf", "bpr")
_CACHE_FORMAT = 1  # bump when the training code changes what a key produces


@dataclass
class CFEmbeddings:
    """Collaborative item embeddings.

    Attributes:
        embeddings: (N, dim) float32; rows of uncovered items are zero.
        covered: (N,) bool, items that received training signal.
        method: ``"mf"`` or ``"bpr"``.
        cache_path: the cache file (None when caching is off).
        from_cache: True when loaded from the cache instead of trained.
    """

    embeddings: torch.Tensor
    covered: torch.Tensor
    method: str
    cache_path: Path | None = None
    from_cache: bool = False

    @property
    def num_uncovered(self) -> int:
        return int((~self.covered).sum())


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$GENREC_CACHE_DIR``, else ``~/.cache/genrec`` (same root as the embedding cache)."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "genrec").expanduser()


def _flatten(train_sequences, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences -> (lengths (U,), values (sum lengths,)) int64, checked to be item indices in 0..num_items-1."""
    lengths, values = [], []
    for u, seq in enumerate(train_sequences):
        arr = np.asarray(seq.cpu() if isinstance(seq, torch.Tensor) else seq)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"train sequence {u} must be a 1-D list of integer item indices, got dtype {arr.dtype} shape {arr.shape}")
        arr = arr.astype(np.int64, copy=False)
        bad = (arr < 0) | (arr >= num_items)
        if bad.any():
            raise ValueError(f"train sequence {u} holds item indices outside 0..{num_items - 1}: {arr[bad][:5].tolist()}")
        lengths.append(len(arr))
        values.append(arr)
    lengths = np.asarray(lengths, dtype=np.int64)
    return lengths, (np.concatenate(values) if values else np.zeros(0, dtype=np.int64))


def cache_key(lengths: np.ndarray, values: np.ndarray, num_items: int, params: dict) -> str:
    """sha256 (hex) of the training sequences, the number of items and the hyper-parameters."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": _CACHE_FORMAT, "num_items": num_items, **params}, sort_keys=True).encode())
    h.update(lengths.tobytes())
    h.update(values.tobytes())
    return h.hexdigest()


def cooccurrence_pairs(lengths: np.ndarray, values: np.ndarray, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs (a, b) of distinct items at most ``window`` positions apart within a sequence."""
    user = np.repeat(np.arange(len(lengths)), lengths)
    anchors, contexts = [], []
    for offset in range(1, window + 1):
        same_user = user[offset:] == user[:-offset] if len(values) > offset else np.zeros(0, dtype=bool)
        a, b = values[:-offset][same_user], values[offset:][same_user]
        keep = a != b  # a repeat consumption is not evidence of similarity between two items
        anchors += [a[keep], b[keep]]
        contexts += [b[keep], a[keep]]
    if not anchors:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.concatenate(anchors)), torch.from_numpy(np.concatenate(contexts))


def _train_mf(lengths, values, num_items, dim, epochs, seed, window, negatives, lr, batch_size) -> tuple[torch.Tensor, torch.Tensor]:
    anchor, context = cooccurrence_pairs(lengths, values, window)
    covered = torch.zeros(num_items, dtype=torch.bool)
    covered[anchor] = True
    if len(anchor) == 0:
        raise ValueError(f"no two distinct items co-occur within {window} positions in any training sequence: nothing to factorise")
    generator = torch.Generator().manual_seed(seed)
    item = torch.nn.Parameter(torch.randn(num_items, dim, generator=generator) / dim**0.5)
    ctx = torch.nn.Parameter(torch.zeros(num_items, dim))
    noise = torch.bincount(context, minlength=num_items).double().pow(0.75)
    optimizer = torch.optim.Adam([item, ctx], lr=lr)
    for _ in range(epochs):
        for rows in torch.randperm(len(anchor), generator=generator).split(batch_size):
            a, c = anchor[rows], context[rows]
            neg = torch.multinomial(noise, len(rows) * negatives, replacement=True, generator=generator).view(len(rows), negatives)
            # F.embedding rather than indexing: its CPU backward accumulates repeated rows in a fixed order.
            va = F.embedding(a, item)
            pos_logit = (va * F.embedding(c, ctx)).sum(dim=1)
            neg_logit = torch.einsum("bd,bkd->bk", va, F.embedding(neg, ctx))
            loss = -(F.logsigmoid(pos_logit).mean() + F.logsigmoid(-neg_logit).sum(dim=1).mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return item.detach(), covered


def _train_bpr(lengths, values, num_items, dim, epochs, seed, lr, batch_size, weight_decay) -> tuple[torch.Tensor, torch.Tensor]:
    users = torch.from_numpy(np.repeat(np.arange(len(lengths)), lengths))
    items = torch.from_numpy(values)
    if len(items) == 0:
        raise ValueError("the training sequences hold no interaction: nothing to factorise")
    covered = torch.zeros(num_items, dtype=torch.bool)
    covered[items] = True
    generator = torch.Generator().manual_seed(seed)
    user_f = torch.nn.Parameter(torch.randn(len(lengths), dim, generator=generator) * 0.1)
    item_f = torch.nn.Parameter(torch.randn(num_items, dim, generator=generator) * 0.1)
    optimizer = torch.optim.Adam([user_f, item_f], lr=lr)
    for _ in range(epochs):
        for rows in torch.randperm(len(items), generator=generator).split(batch_size):
            u, i = users[rows], items[rows]
            j = torch.randint(num_items, (len(rows),), generator=generator)
            pu, qi, qj = F.embedding(u, user_f), F.embedding(i, item_f), F.embedding(j, item_f)
            loss = -F.logsigmoid((pu * (qi - qj)).sum(dim=1)).mean()
            loss = loss + weight_decay * (pu.pow(2).sum(dim=1) + qi.pow(2).sum(dim=1) + qj.pow(2).sum(dim=1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return item_f.detach(), covered


DEFAULT_EPOCHS = {"mf": 5, "bpr": 20}  # measured on Beauty, see docs/regularizers.md


def train_cf_embeddings(train_sequences, num_items: int, dim: int = 64, method: str = "mf", epochs: int | None = None, seed: int = 0,
                        cache_dir: str | os.PathLike | None = None, use_cache: bool = True, window: int = 5, negatives: int = 5,
                        lr: float = 0.01, batch_size: int = 4096, weight_decay: float = 1e-4) -> CFEmbeddings:
    """Collaborative item embeddings from the users' training sequences only.

    Args:
        train_sequences: one sequence of item indices (0..num_items-1) per user, the *training* part only.
        num_items: N, rows of the result.
        dim: embedding size.
        method: ``"mf"`` (co-occurrence factorisation, SGNS) or ``"bpr"`` (BPR-MF).
        epochs: passes over the positive pairs (mf) or interactions (bpr); None = ``DEFAULT_EPOCHS[method]``.
        seed: initialisation, shuffling and negative sampling (the result is a function of it).
        cache_dir: cache root (see module docstring); ``use_cache=False`` neither reads nor writes it.
        window: mf: co-occurrence window in positions.  negatives: mf: negatives per positive.
        lr, batch_size: Adam step size and examples per step.  weight_decay: bpr: L2 weight on the factors.
    Returns:
        :class:`CFEmbeddings`; uncovered items have zero rows (their count is logged).
    """
    if method not in METHODS:
        raise ValueError(f"unknown CF method '{method}'; available: {list(METHODS)}")
    epochs = DEFAULT_EPOCHS[method] if epochs is None else int(epochs)
    if num_items < 1 or dim < 1 or epochs < 1 or window < 1 or negatives < 1 or batch_size < 1:
        raise ValueError(f"num_items, dim, epochs, window, negatives and batch_size must be >= 1, got num_items={num_items}, "
                         f"dim={dim}, epochs={epochs}, window={window}, negatives={negatives}, batch_size={batch_size}")
    lengths, values = _flatten(train_sequences, num_items)
    params = {"method": method, "dim": dim, "epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size}
    params.update({"window": window, "negatives": negatives} if method == "mf" else {"weight_decay": weight_decay})
    path = None
    if use_cache:
        path = cache_root(cache_dir) / "cf" / f"{method}-d{dim}-{cache_key(lengths, values, num_items, params)[:24]}.safetensors"
        if path.exists():
            stored = load_file(str(path))
            if stored.get("embeddings") is None or tuple(stored["embeddings"].shape) != (num_items, dim):
                raise ValueError(f"CF cache file {path} is corrupt (expected embeddings of shape {(num_items, dim)}); delete it")
            return CFEmbeddings(stored["embeddings"], stored["covered"].bool(), method, path, from_cache=True)
    if method == "mf":
        vectors, covered = _train_mf(lengths, values, num_items, dim, epochs, seed, window, negatives, lr, batch_size)
    else:
        vectors, covered = _train_bpr(lengths, values, num_items, dim, epochs, seed, lr, batch_size, weight_decay)
    vectors = torch.where(covered[:, None], vectors, torch.zeros_like(vectors)).float().contiguous()
    uncovered = int((~covered).sum())
    if uncovered:
        logger.info("CF embeddings (%s): %d of %d items have no training signal; their rows are zero and covered=False",
                    method, uncovered, num_items)
    if path is not None:
        metadata = {key: str(value) for key, value in params.items()}
        metadata.update(num_items=str(num_items), num_sequences=str(len(lengths)), uncovered=str(uncovered))
        atomic_save_safetensors({"embeddings": vectors, "covered": covered.to(torch.uint8)}, path, metadata=metadata)
    return CFEmbeddings(vectors, covered, method, path, from_cache=False)
