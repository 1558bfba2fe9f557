"""Item feature sources (genrec.data.features): categorical attributes, user vector files in every supported
format (round trips), text embeddings with missing text, and the errors for bad input (wrong dimension,
ids missing from the file, NaN rows, duplicate ids, ...), each naming the file and the offending ids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import save_file

from genrec.data import DataError
from genrec.data.features import (
    AttributeFeatures,
    ItemFeatures,
    TextFeatures,
    VectorFileFeatures,
    build_features,
    feature_source,
)
from genrec.tokenizer.fusion import SourceLayout, pack_sources

pytestmark = pytest.mark.usefixtures("single_thread")

IDS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture
def items() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": IDS,
        "title": ["Red lipstick", "Blue nail polish", "Green shampoo", "Lip balm", "Face cream", "Hair dryer"],
        "brand": ["OPI", "OPI", None, "Unknown", "Nivea", "Nivea"],
        "categories": [["Makeup", "Lips"], ["Makeup", "Nails"], ["Hair"], ["Makeup", "Lips"], ["Skin"], ["Hair", "Tools"]],
        "year": [1995.0, 1999.0, 2003.0, float("nan"), 1988.0, 2001.0],
    })


def vectors(n: int = 8, d: int = 6, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Vectors for the 6 catalogue items + 2 ids the catalogue lacks, in a shuffled order."""
    rng = np.random.default_rng(seed)
    ids = ["f", "x1", "a", "c", "b", "e", "d", "x2"][:n]
    return ids, rng.normal(size=(n, d)).astype(np.float32)


def expected_rows(ids, matrix) -> np.ndarray:
    row = {i: r for r, i in enumerate(ids)}
    return np.stack([matrix[row[i]] for i in IDS])


# ---- attributes -----------------------------------------------------------------------------------------
def test_attributes_multi_hot_over_list_string_and_bucketed_numeric_columns(items):
    src = AttributeFeatures("attrs", columns=["brand", "categories", "year"], min_count=1, ignore_values=["Unknown"])
    f = src.build(items)
    vocab = f.info["vocabulary"]
    assert vocab == sorted(vocab) and "brand=Unknown" not in vocab
    assert {"brand=OPI", "categories=Lips", "year=[1990,2000)", "year=[2000,2010)", "year=[1980,1990)"} <= set(vocab)
    assert f.values.shape == (6, len(vocab)) and f.present.all() and f.info["dim"] == len(vocab)
    row = dict(zip(vocab, f.values[0].tolist(), strict=True))
    assert {t for t, v in row.items() if v == 1} == {"brand=OPI", "categories=Makeup", "categories=Lips", "year=[1990,2000)"}
    assert f.info["per_column"]["year"] == 3

    # min_count drops rare values (counted); an item left with nothing is missing: an error naming it, or a placeholder.
    cut = AttributeFeatures("attrs", columns=["brand"], min_count=2, ignore_values=["Unknown"])
    with pytest.raises(DataError, match=r"source 'attrs': 2 of 6 item\(s\) have no kept value in \['brand'\]: \['c', 'd'\]"):
        cut.build(items)
    cut.on_missing = "placeholder"
    f = cut.build(items)
    assert f.info["vocabulary"] == ["brand=Nivea", "brand=OPI"] and f.info["missing"] == 2
    assert f.present.tolist() == [True, True, False, False, True, True] and f.values[2:4].abs().sum() == 0
    # A saved vocabulary encodes new items identically (unknown values are dropped, not added).
    new = pd.DataFrame({"item_id": ["n1", "n2"], "brand": ["OPI", "Loreal"]})
    again = AttributeFeatures("attrs", columns=["brand"], vocabulary=f.info["vocabulary"], on_missing="placeholder").build(new)
    assert again.values.tolist() == [[0.0, 1.0], [0.0, 0.0]] and again.present.tolist() == [True, False]

    with pytest.raises(DataError, match=r"no column\(s\) \['shelf'\]"):
        AttributeFeatures("attrs", columns=["shelf"]).build(items)
    with pytest.raises(DataError, match="bucket_width for 'year' must be a positive number"):
        AttributeFeatures("attrs", columns=["year"], bucket_width={"year": 0}, on_missing="placeholder").build(items)


# ---- vector files: round trips ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["npy+ids.json", "npy+ids.txt", "npy+int-ids.npy", "npz", "safetensors", "safetensors+ids_path",
                                 "parquet", "parquet-wide"])
def test_vector_file_round_trip(tmp_path, items, fmt):
    ids, matrix = vectors()
    spec = {"kind": "vectors"}
    if fmt == "npy+ids.json":  # the sibling <name>.ids.json is found without ids_path
        np.save(tmp_path / "img.npy", matrix)
        (tmp_path / "img.ids.json").write_text(json.dumps(ids))
        spec["path"] = str(tmp_path / "img.npy")
    elif fmt == "npy+ids.txt":
        np.save(tmp_path / "img.npy", matrix)
        (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
        spec.update(path="img.npy", ids_path="ids.txt", base_dir=str(tmp_path))  # relative to base_dir
    elif fmt == "npy+int-ids.npy":
        int_items = items.assign(item_id=[str(i) for i in range(10, 16)])
        int_ids = [10 + IDS.index(i) if i in IDS else 90 + int(i[1]) for i in ids]  # integer ids match "10".."15"
        np.save(tmp_path / "img.npy", matrix)
        np.save(tmp_path / "img_ids.npy", np.array(int_ids, dtype=np.int64))
        f = feature_source("img", {**spec, "path": str(tmp_path / "img.npy"), "ids_path": str(tmp_path / "img_ids.npy")}).build(int_items)
        assert np.allclose(f.values.numpy(), expected_rows(ids, matrix)) and f.present.all()
        return
    elif fmt == "npz":
        np.savez(tmp_path / "img.npz", ids=np.array(ids), vectors=matrix)
        spec["path"] = str(tmp_path / "img.npz")
    elif fmt == "safetensors":
        save_file({"embeddings": matrix}, str(tmp_path / "img.safetensors"), metadata={"item_ids": json.dumps(ids)})
        spec["path"] = str(tmp_path / "img.safetensors")
    elif fmt == "safetensors+ids_path":
        save_file({"clip": matrix}, str(tmp_path / "img.safetensors"))
        (tmp_path / "ids.json").write_text(json.dumps(ids))
        spec.update(path=str(tmp_path / "img.safetensors"), ids_path=str(tmp_path / "ids.json"))
    elif fmt == "parquet":
        pd.DataFrame({"item_id": ids, "embedding": list(matrix)}).to_parquet(tmp_path / "img.parquet")
        spec["path"] = str(tmp_path / "img.parquet")
    else:  # one column per dimension
        wide = pd.DataFrame(matrix, columns=[f"v{k}" for k in range(matrix.shape[1])])
        wide.insert(0, "sku", ids)
        wide.to_parquet(tmp_path / "img.parquet")
        spec.update(path=str(tmp_path / "img.parquet"), id_column="sku")
    f = feature_source("image", spec).build(items)
    assert isinstance(f, ItemFeatures) and f.name == "image" and f.kind == "vectors"
    assert f.values.dtype == torch.float32 and f.values.shape == (6, 6) and f.present.all()
    assert np.allclose(f.values.numpy(), expected_rows(ids, matrix))
    assert f.info["extra_ids"] == 2 and f.info["rows_in_file"] == 8 and f.info["missing"] == 0 and f.info["dim"] == 6


# ---- vector files: bad input ----------------------------------------------------------------------------
def _npy(tmp_path, ids, matrix, name="img"):
    np.save(tmp_path / f"{name}.npy", matrix)
    (tmp_path / f"{name}.ids.json").write_text(json.dumps(ids))
    return str(tmp_path / f"{name}.npy")


def test_wrong_dimension_is_an_error_naming_the_file(tmp_path, items):
    ids, matrix = vectors()
    path = _npy(tmp_path, ids, matrix)
    with pytest.raises(DataError, match=r"img\.npy: vectors have dimension 6, source 'image' expects dim=512"):
        feature_source("image", {"kind": "vectors", "path": path, "dim": 512}).build(items)
    ragged = pd.DataFrame({"item_id": ids, "embedding": [m if i != "c" else m[:4] for i, m in zip(ids, matrix, strict=True)]})
    ragged.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"r\.parquet: vectors of different lengths in 'embedding' \(most have 6\); other lengths for ids \['c'\]"):
        feature_source("image", {"kind": "vectors", "path": str(tmp_path / "r.parquet")}).build(items)
    np.save(tmp_path / "short.npy", matrix)
    (tmp_path / "short.ids.json").write_text(json.dumps(ids[:5]))
    with pytest.raises(DataError, match=r"short\.npy: 8 vector row\(s\) but 5 id\(s\)"):
        feature_source("image", {"kind": "vectors", "path": str(tmp_path / "short.npy")}).build(items)


def test_items_missing_from_the_file_error_or_take_a_counted_placeholder(tmp_path, items, caplog):
    ids, matrix = vectors()
    keep = [k for k, i in enumerate(ids) if i not in ("b", "d")]
    path = _npy(tmp_path, [ids[k] for k in keep], matrix[keep])
    with pytest.raises(DataError, match=r"source 'image' \(.*img\.npy\): 2 of 6 item\(s\) have no vector: \['b', 'd'\]"):
        feature_source("image", {"kind": "vectors", "path": path}).build(items)
    with caplog.at_level("WARNING", logger="genrec.data.features"):
        f = feature_source("image", {"kind": "vectors", "path": path, "on_missing": "placeholder"}).build(items)
    assert f.present.tolist() == [True, False, True, False, True, True] and f.values[[1, 3]].abs().sum() == 0
    assert f.info["missing"] == 2 and f.info["missing_examples"] == ["b", "d"] and "2 of 6 item(s) have no vector" in caplog.text


def test_nan_rows_and_duplicate_ids_are_errors_naming_the_ids(tmp_path, items):
    ids, matrix = vectors()
    nan = matrix.copy()
    nan[ids.index("c"), 2] = np.nan
    path = _npy(tmp_path, ids, nan, "nan")
    with pytest.raises(DataError, match=r"nan\.npy: NaN/inf in the vectors of 1 item\(s\): \['c'\]"):
        feature_source("image", {"kind": "vectors", "path": path}).build(items)
    f = feature_source("image", {"kind": "vectors", "path": path, "nan_rows": "missing", "on_missing": "placeholder"}).build(items)
    assert f.present.tolist() == [True, True, False, True, True, True] and f.info["nan_rows"] == 1

    dup_ids = ids[:-1] + ["a"]
    path = _npy(tmp_path, dup_ids, matrix, "dup")
    with pytest.raises(DataError, match=r"dup\.npy: 1 duplicate item id\(s\): \['a'\]"):
        feature_source("image", {"kind": "vectors", "path": path}).build(items)

    zero = matrix.copy()
    zero[ids.index("e")] = 0
    with pytest.raises(DataError, match=r"all-zero vectors for 1 item\(s\): \['e'\]"):
        feature_source("image", {"kind": "vectors", "path": _npy(tmp_path, ids, zero, "zero")}).build(items)


def test_other_vector_file_errors(tmp_path, items):
    _, matrix = vectors()
    np.save(tmp_path / "lonely.npy", matrix)
    with pytest.raises(DataError, match=r"lonely\.npy: a \.npy file needs its item ids: pass ids_path"):
        feature_source("image", {"kind": "vectors", "path": str(tmp_path / "lonely.npy")}).build(items)
    save_file({"embeddings": matrix}, str(tmp_path / "noids.safetensors"))
    with pytest.raises(DataError, match="no item ids: store them as a JSON list in the metadata"):
        feature_source("image", {"kind": "vectors", "path": str(tmp_path / "noids.safetensors")}).build(items)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "obj.ids.json").write_text('["a"]')
    with pytest.raises(DataError, match="cannot read without unpickling"):
        feature_source("image", {"kind": "vectors", "path": str(tmp_path / "obj.npy")}).build(items)
    with pytest.raises(DataError, match="vector file not found"):
        feature_source("image", {"kind": "vectors", "path": str(tmp_path / "nope.npy")}).build(items)
    with pytest.raises(DataError, match=r"unknown vector file type '\.csv'"):
        (tmp_path / "v.csv").write_text("x")
        feature_source("image", {"kind": "vectors", "path": str(tmp_path / "v.csv")}).build(items)
    with pytest.raises(DataError, match=r"unknown option\(s\) \['dims'\]; valid:"):
        feature_source("image", {"kind": "vectors", "path": "x.npy", "dims": 4})
    with pytest.raises(DataError, match="kind must be one of"):
        feature_source("image", {"kind": "video"})


# ---- text, and several sources together ----------------------------------------------------------------
def test_text_sources_with_missing_text_and_packing(tmp_path, items):
    from genrec.data import embed_texts

    cache = tmp_path / "cache"
    brand = {"kind": "text", "template": "Brand: {brand}.", "cache_dir": str(cache)}
    with pytest.raises(DataError, match=r"1 item\(s\) have no text .*\['c'\]"):
        feature_source("brand_text", brand).build(items)
    f = feature_source("brand_text", {**brand, "on_missing": "placeholder"}).build(items)
    assert f.present.tolist() == [True, True, False, True, True, True] and f.info["missing"] == 1 and f.values.shape == (6, 384)
    expected = embed_texts(["Brand: OPI.", "Brand: OPI.", "Brand: Unknown.", "Brand: Nivea.", "Brand: Nivea."], cache_dir=cache,
                           show_progress=False)
    assert np.allclose(f.values[f.present].numpy(), expected, atol=1e-6) and f.values[2].abs().sum() == 0
    f = feature_source("brand_text", {**brand, "on_missing": "item_id"}).build(items)
    assert f.present.all() and np.allclose(f.values[2].numpy(), embed_texts(["Item c"], cache_dir=cache, show_progress=False)[0])

    # Several sources at once (a mapping; None disables one), packed for the tokenizer.
    features = build_features(items, {
        "title": {"kind": "text", "template": "Title: {title}."},
        "brand": None,
        "attrs": {"kind": "attributes", "columns": ["categories"], "min_count": 1},
    }, cache_dir=str(cache))
    assert [f.name for f in features] == ["title", "attrs"] and isinstance(feature_source("t", {"kind": "text"}), TextFeatures)
    x = pack_sources(features)
    layout = SourceLayout([f.name for f in features], [f.dim for f in features])
    assert x.shape == (6, layout.packed_dim) and torch.equal(layout.split(x)[0][0], features[0].values)
    as_list = build_features(items, [{"name": "attrs", "kind": "attributes", "columns": ["categories"], "min_count": 1}])
    assert torch.equal(as_list[0].values, features[1].values)
    with pytest.raises(DataError, match="two sources are named 'a'"):
        build_features(items, [{"name": "a", "kind": "text"}, {"name": "a", "kind": "text"}])
    assert VectorFileFeatures().kind == "vectors"
