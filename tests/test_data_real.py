"""The data package on the shared datasets (skipped with a reason without ``GENREC_DATA_DIR``).

Expected counts: n - 3 training examples per user with n interactions, one validation and one
test example per user (README of each dataset: users / interactions match TIGER's tables).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from genrec.data import DataError, build_seq2seq_dataset, item_texts, leave_one_out_split, load_dataset
from genrec.vocab import SIDVocab


def dataset_or_skip(data_dir, name):
    if not (data_dir / name).is_dir():
        pytest.skip(f"{data_dir / name} is not available")
    return load_dataset(name, data_dir)


def test_beauty_split_counts_and_sequences(data_dir):
    ds = dataset_or_skip(data_dir, "amazon_beauty")
    assert (ds.num_users, len(ds.items), len(ds.interactions)) == (22_363, 12_101, 198_502)
    split = leave_one_out_split(ds)
    assert split.skipped_users == []
    assert (len(split.train), len(split.valid), len(split.test)) == (131_413, 22_363, 22_363)
    assert split.train.history_lengths.max() == 20 and split.test.history_lengths.min() >= 4  # 5-core
    # The test example of the first user is its whole sequence but the last item.
    first = ds.interactions[ds.interactions["user_id"] == split.user_ids[0]]
    index = {item: i for i, item in enumerate(split.item_ids)}
    sequence = [index[i] for i in first["item_id"]]
    assert split.test.history(0).tolist() == sequence[:-1][-20:] and split.test.target[0] == sequence[-1]
    assert split.valid.target[0] == sequence[-2]
    assert sum(len(s) for s in split.train_sequences) == 198_502 - 2 * 22_363

    # Seq2seq rows for all 131k training examples are built in seconds (vectorised).
    vocab = SIDVocab((256, 256, 256, 8), num_user_tokens=2000)
    codes = np.random.default_rng(0).integers(0, 8, size=(len(split.item_ids), 4))
    tokens = vocab.codes_to_tokens(torch.as_tensor(codes))
    start = time.perf_counter()
    train = build_seq2seq_dataset(split.train, tokens, add_user_token=vocab.user_token)
    seconds = time.perf_counter() - start
    assert len(train) == 131_413 and seconds < 15, seconds
    assert max(train["length"]) == 1 + 4 * 20 + 1


def test_beauty_item_texts(data_dir):
    ds = dataset_or_skip(data_dir, "amazon_beauty")
    texts = item_texts(ds.items)
    assert len(texts) == 12_101 and all(t.endswith(".") for t in texts)
    assert sum(t.startswith("Title: ") for t in texts) == 12_094  # 7 items have no title
    for text, item in zip(texts, ds.items.to_dict("records"), strict=True):
        parts = [f"Title: {item['title']}."] if item["title"] else []
        parts += [f"Brand: {item['brand']}."] if item["brand"] else []
        parts += [f"Categories: {', '.join(item['categories'])}."] if item["categories"] else []
        assert text == " ".join(parts)


def test_movielens_split_and_placeholder_item(data_dir):
    ds = dataset_or_skip(data_dir, "ml_100k")
    split = leave_one_out_split(ds)
    assert (len(split.user_ids), len(split.train), len(split.test)) == (943, 100_000 - 3 * 943, 943)
    with pytest.raises(DataError, match=r"1 item\(s\) have no text .*\['267'\]"):
        item_texts(ds.items)
    texts = item_texts(ds.items, on_empty="item_id")
    assert texts[0] == "Title: Toy Story. Year: 1995. Genres: Animation, Children's, Comedy." and texts[266] == "Item 267"


@pytest.mark.parametrize("name, users, interactions", [("amazon_sports", 35_598, 296_337), ("amazon_toys", 19_412, 167_597)])
def test_other_amazon_split_counts(data_dir, name, users, interactions):
    split = leave_one_out_split(dataset_or_skip(data_dir, name))
    assert (len(split.user_ids), len(split.valid), len(split.train)) == (users, users, interactions - 3 * users)
