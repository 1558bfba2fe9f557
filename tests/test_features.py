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
    with pytest.raises(DataError, match=r"source 'brand_text': 1 of 6 item\(s\) have no text for the template 'Brand: \{brand\}\.': \['c'\]; "
                                        r"set on_missing: placeholder \(or item_id"):
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


# ---- the tokenizer recipe with a features section ----------------------------------------------------
def _recipe():
    from genrec.recipes import train_tokenizer

    return train_tokenizer


@pytest.fixture(scope="module")
def beauty200(tmp_path_factory, data_dir):
    """The first 200 Beauty items and their interactions, in the standard dataset format."""
    import gzip

    src = data_dir / "amazon_beauty"
    if not src.is_dir():
        pytest.skip("amazon_beauty is not in GENREC_DATA_DIR")
    items = pd.read_json(src / "items.jsonl.gz", lines=True, dtype={"item_id": str}, nrows=200)
    inter = pd.read_csv(src / "interactions.csv.gz", dtype={"user_id": str, "item_id": str})
    out = tmp_path_factory.mktemp("data") / "beauty200"
    out.mkdir()
    inter[inter["item_id"].isin(set(items["item_id"]))].to_csv(out / "interactions.csv.gz", index=False)
    with gzip.open(out / "items.jsonl.gz", "wt") as f:
        for record in items.to_dict("records"):
            f.write(json.dumps(record) + "\n")
    return out


def run_recipe(config, dataset, tmp_path, *overrides):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "recipes/configs" / config
    return _recipe().main(["--config", str(config), f"dataset={dataset}", f"output_dir={tmp_path / 'tok'}",
                           f"embedding_cache_dir={tmp_path.parent / 'embedding_cache'}", "codebook_sizes=[8,8,8]", "epochs=2",
                           "batch_size=64", "log_every=0", *overrides])


@pytest.mark.slow
def test_recipe_text_plus_attributes_writes_a_tokenizer_that_refeaturises_new_items(beauty200, tmp_path):
    from genrec.data import embed_texts, item_texts, load_dataset
    from genrec.tokenizer import RQVAE, SIDTokenizer, tokenizer_metrics

    metrics = run_recipe("tokenizer_rqvae_text_attrs.yaml", beauty200, tmp_path)
    tok = SIDTokenizer.from_pretrained(tmp_path / "tok")
    record = tok.config["features"]
    assert isinstance(tok.quantizer, RQVAE) and tok.quantizer.fusion is not None and tok.method == "rq_vae"
    assert [s["name"] for s in record["layout"]] == ["text", "attrs"] and record["compatibility_source"] == "text"
    assert record["fusion"] == {"type": "concat", "weights": {"text": 1.0, "attrs": 1.0}}
    assert [s["name"] for s in record["sources"]] == ["text", "attrs"] and record["compatibility_only"] == []
    assert record["sources"][1]["vocabulary"] and "vocabulary" not in record["stats"]["attrs"]
    assert tok.embedding_dim == 384 + record["stats"]["attrs"]["dim"] + 2
    saved = json.loads((tmp_path / "tok" / "metrics.json").read_text())
    assert saved["metrics_content"] == "text" and saved["config"]["features"]["attrs"]["columns"] == ["brand", "categories"]

    # The record rebuilds the same packed input: the saved quantiser re-encodes the table's codes, and
    # new items go through the same features and fusion (cold start).
    dataset = load_dataset(beauty200)
    features = build_features(dataset.items, record["sources"], cache_dir=str(tmp_path.parent / "embedding_cache"))
    x = pack_sources(features)
    assert torch.equal(tok.quantizer.encode(x), tok.sids[:, :-1])
    new = build_features(dataset.items.iloc[:3].assign(item_id=["n1", "n2", "n3"]), record["sources"],
                         cache_dir=str(tmp_path.parent / "embedding_cache"))
    cold = tok.encode(pack_sources(new), item_ids=["n1", "n2", "n3"])
    assert torch.equal(cold.sids[:, :-1], tok.sids[:3, :-1])

    # Embedding metrics compare the text (compatibility_source), as a text-only tokenizer's do.
    text = torch.from_numpy(embed_texts(item_texts(dataset.items), cache_dir=tmp_path.parent / "embedding_cache", show_progress=False))
    expected = tokenizer_metrics(tok.sids[:, :-1], (8, 8, 8), x=text)
    assert metrics["harmful_near_collision_share"] == pytest.approx(expected["harmful_near_collision_share"])


@pytest.mark.slow
@pytest.mark.parametrize("config", ["tokenizer_rqkmeans.yaml", "tokenizer_random.yaml"])
def test_recipe_untrained_methods_quantise_the_fixed_concatenation(beauty200, tmp_path, config):
    from genrec.tokenizer import FusedQuantizer, SIDTokenizer

    features = "features={text: {kind: text}, attrs: {kind: attributes, columns: [brand], on_missing: placeholder}}"
    run_recipe(config, beauty200, tmp_path, features, "codebook_sizes=[8,8]")
    tok = SIDTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.method == "fused" and isinstance(tok.quantizer, FusedQuantizer)
    assert tok.quantizer.get_config()["fusion"]["learned_placeholder"] is False
    assert tok.config["features"]["stats"]["attrs"]["missing"] > 0  # counted, not silently zero
    with pytest.raises(_recipe_config_error(), match="cannot learn a fusion; use fusion.type=concat"):
        run_recipe(config, beauty200, tmp_path / "p", features, "codebook_sizes=[8,8]", "fusion.type=projection")


def _recipe_config_error():
    from genrec.config import ConfigError

    return ConfigError


@pytest.mark.slow
def test_recipe_adasid_on_attributes_gates_on_a_compatibility_only_text_source(beauty200, tmp_path):
    from genrec.tokenizer import SIDTokenizer

    run_recipe("tokenizer_adasid_attrs.yaml", beauty200, tmp_path, "cf.epochs=1", f"cf.cache_dir={tmp_path / 'cf'}",
               "cold_item_fraction=0.2")
    saved = json.loads((tmp_path / "tok" / "metrics.json").read_text())
    assert len(saved["history"]["rep"]) == 2 and "rep/gate/gate_mean" in saved["history"] and len(saved["cold_item_ids"]) == 40
    tok = SIDTokenizer.from_pretrained(tmp_path / "tok")
    record = tok.config["features"]
    assert [s["name"] for s in record["layout"]] == ["attrs"] and [s["name"] for s in record["compatibility_only"]] == ["text"]
    assert len({tuple(s) for s in tok.sids.tolist()}) == len(tok) == 200


@pytest.mark.slow
def test_recipe_feature_config_errors(beauty200, tmp_path):
    ConfigError = _recipe_config_error()
    with pytest.raises(ConfigError, match=r"compatibility_source: 'image' is not a source; sources: \['text', 'attrs'\]"):
        run_recipe("tokenizer_rqvae_text_attrs.yaml", beauty200, tmp_path, "compatibility_source=image")
    with pytest.raises(ConfigError, match="apply to a features section; this config has none"):
        run_recipe("tokenizer_rqvae.yaml", beauty200, tmp_path, "fusion.type=projection")
    with pytest.raises(ConfigError, match=r"fusion: unknown key\(s\) \['dims'\]"):
        run_recipe("tokenizer_rqvae_text_attrs.yaml", beauty200, tmp_path, "fusion.dims=8")
    with pytest.raises(ConfigError, match=r"features: source 'attrs': the item table has no column\(s\) \['shelf'\]"):
        run_recipe("tokenizer_rqvae_text_attrs.yaml", beauty200, tmp_path, "features.attrs.columns=[shelf]")
    with pytest.raises(ConfigError, match=r"fusion weights name unknown source\(s\) \['image'\]"):
        run_recipe("tokenizer_rqvae_text_attrs.yaml", beauty200, tmp_path, "fusion.weights.image=2.0")
    with pytest.raises(ConfigError, match=r"\['fusion'\] are set at the top level"):
        run_recipe("tokenizer_rqvae_text_attrs.yaml", beauty200, tmp_path, "quantizer.fusion=null")
    assert not (tmp_path / "tok").exists()
