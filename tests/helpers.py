"""Plain builders shared by several test modules (no fixtures: those live in conftest.py).

Import as ``from tests.helpers import ...`` (``tests`` is a package; see tests/__init__.py).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import torch

from genrec.models import T5RecConfig
from genrec.vocab import EOS_ID, SIDVocab

# ---- the synthetic catalogue of test_pipeline and test_cli: 60 items with Amazon-style text fields, 40 users

NUM_ITEMS, NUM_USERS, DIM = 60, 40, 8


def synthetic_interactions(seed: int = 0) -> pd.DataFrame:
    """40 users, 5-9 interactions each, drifting through item clusters (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(NUM_USERS):
        start = int(rng.integers(NUM_ITEMS))
        for t in range(int(rng.integers(5, 10))):
            rows.append((f"user{u}", f"item{(start + 3 * t + int(rng.integers(2))) % NUM_ITEMS}", 1000 * u + t))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def write_dataset(folder: Path, interactions: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    interactions.to_csv(folder / "interactions.csv.gz", index=False)
    with gzip.open(folder / "items.jsonl.gz", "wt") as f:
        for i in range(NUM_ITEMS):
            f.write(json.dumps({"item_id": f"item{i}", "title": f"Product {i}", "brand": f"Brand {i % 7}",
                                "categories": f"Cat {i % 5}"}) + "\n")
    return folder


# ---- tiny models and random catalogues of the decoding tests (test_decoding_beam_search, test_decoding_exact)

DECODING_T5 = T5RecConfig(d_model=32, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, d_ff=64)


def make_catalogue(vocab: SIDVocab, num_items: int, seed: int) -> torch.Tensor:
    """(N, D) token ids of unique random SIDs, in random item order (N <= num_items after dedup)."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, k, (num_items,), generator=gen) for k in vocab.codebook_sizes], dim=1)
    codes = torch.unique(codes, dim=0)
    return vocab.codes_to_tokens(codes[torch.randperm(len(codes), generator=gen)])


def make_histories(item_tokens: torch.Tensor, batch: int, seed: int, left_pad: bool = False):
    """Random histories of 1-4 items + eos, padded with 0 -> (input_ids, attention_mask)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        items = torch.randint(0, len(item_tokens), (int(torch.randint(1, 5, (1,), generator=gen)),), generator=gen)
        rows.append(item_tokens[items].flatten().tolist() + [EOS_ID])
    width = max(len(r) for r in rows)
    ids = torch.zeros(batch, width, dtype=torch.long)
    for i, r in enumerate(rows):
        if left_pad:
            ids[i, width - len(r) :] = torch.tensor(r)
        else:
            ids[i, : len(r)] = torch.tensor(r)
    return ids, (ids != 0).long()


def exhaustive_top_k(scores: torch.Tensor, top_k: int, exclude=None):
    """Plain-Python ranking of every item: score descending, ties by item index."""
    items, values = [], []
    for user, row in enumerate(scores.tolist()):
        ranked = sorted((i for i in range(len(row)) if not exclude or i not in exclude[user]), key=lambda i: (-row[i], i))
        ranked = ranked[:top_k] + [-1] * max(0, top_k - len(ranked))
        items.append(ranked)
        values.append([row[i] if i >= 0 else float("-inf") for i in ranked])
    return torch.tensor(items), torch.tensor(values)


# ---- toy training rows of test_training and test_resume

TRAINING_T5 = T5RecConfig(d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16, d_ff=64, dropout_rate=0.0)


def toy_rows(vocab: SIDVocab, n: int = 64, seed: int = 0):
    """Histories of random length whose target is a deterministic function of the last item."""
    rng = np.random.default_rng(seed)
    items = vocab.codes_to_tokens(torch.tensor([[i % 4, i // 4, 0] for i in range(8)])).tolist()
    rows = {"input_ids": [], "labels": [], "length": [], "target": [], "user_index": []}
    for u in range(n):
        hist = rng.integers(0, 8, size=rng.integers(1, 5)).tolist()
        target = (hist[-1] + 1) % 8
        ids = [t for h in hist for t in items[h]] + [1]
        rows["input_ids"].append(ids)
        rows["labels"].append(items[target])
        rows["length"].append(len(ids))
        rows["target"].append(target)
        rows["user_index"].append(u)
    return datasets.Dataset.from_dict(rows)


def collate_toy_rows(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([r["labels"] for r in rows])}
