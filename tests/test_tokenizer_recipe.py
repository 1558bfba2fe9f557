"""recipes/train_tokenizer.py on the first 500 items of Amazon Beauty, with real MiniLM embeddings.

Needs the shared data (GENREC_DATA_DIR with amazon_beauty/); the data tests are skipped with a reason
when it is absent. Embeddings go to a temporary cache, so the 500 texts are embedded once per run.
"""

import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from genrec.config import ConfigError, load_config
from genrec.recipes import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]

DATA_DIR = os.environ.get("GENREC_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA_DIR or not (Path(DATA_DIR) / "amazon_beauty").is_dir(),
                                reason="GENREC_DATA_DIR with amazon_beauty/ is not available")


@pytest.fixture(scope="module")
def beauty500(tmp_path_factory):
    """The first 500 Beauty items and the interactions on them, in the standard dataset format."""
    src = Path(DATA_DIR) / "amazon_beauty"
    items = pd.read_json(src / "items.jsonl.gz", lines=True, dtype={"item_id": str}, nrows=500)
    inter = pd.read_csv(src / "interactions.csv.gz", dtype={"user_id": str, "item_id": str})
    inter = inter[inter["item_id"].isin(set(items["item_id"]))]
    out = tmp_path_factory.mktemp("data") / "beauty500"
    out.mkdir()
    inter.to_csv(out / "interactions.csv.gz", index=False)
    with gzip.open(out / "items.jsonl.gz", "wt") as f:
        for record in items.to_dict("records"):
            f.write(json.dumps(record) + "\n")
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("embedding_cache")


def run_recipe(config: str, dataset: Path, cache: Path, out: Path, *overrides: str) -> dict:
    return train_tokenizer.main(["--config", str(ROOT / "recipes/configs" / config), f"dataset={dataset}", f"output_dir={out}",
                                 f"embedding_cache_dir={cache}", *overrides])


@pytest.mark.slow
@needs_data
def test_rqvae_recipe_writes_a_consistent_tokenizer(beauty500, cache_dir, tmp_path):
    from genrec.data import embed_texts, item_texts, load_dataset
    from genrec.tokenizer import RQVAE, SIDTable, SIDTokenizer, tokenizer_metrics

    out = tmp_path / "tok"
    returned = run_recipe("tokenizer_rqvae.yaml", beauty500, cache_dir, out, "codebook_sizes=[16,16,16]", "epochs=2", "batch_size=128")
    for name in ("sid_table.safetensors", "sid_items.json", "quantizer.safetensors", "sid_tokenizer_config.json",
                 "README.md", "metrics.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp"))

    dataset = load_dataset(beauty500)
    table = SIDTable.load(out)
    assert table.item_ids == dataset.item_ids and len(table) == 500
    assert table.codebook_sizes[:3] == (16, 16, 16) and table.codebook_sizes[3] >= 1

    # The saved quantiser re-encodes the real embeddings of those 500 texts to the table's codes.
    x = torch.from_numpy(embed_texts(item_texts(dataset.items), cache_dir=cache_dir, show_progress=False))
    assert x.shape == (500, 384)
    tokenizer = SIDTokenizer.from_pretrained(out)
    assert torch.equal(tokenizer.sids, table.sids)
    quantizer = tokenizer.quantizer
    assert isinstance(quantizer, RQVAE)
    codes = quantizer.encode(x)
    assert torch.equal(codes, table.sids[:, :3])

    saved = json.loads((out / "metrics.json").read_text())
    assert len(saved["history"]["recon"]) == 2 and len(saved["history"]["collision_rate"]) == 2
    recomputed = tokenizer_metrics(codes, (16, 16, 16), x=x)
    for key in ("collision_rate", "max_group_size", "mean_utilization", "sid_entropy_ratio", "harmful_near_collision_share"):
        assert saved[key] == pytest.approx(recomputed[key]) and returned[key] == saved[key], key
    assert saved["max_group_size"] == table.codebook_sizes[3]
    assert saved["recon_error"] == pytest.approx(quantizer.reconstruction_error(x), rel=1e-5)
    assert set(saved["timings"]) >= {"embedding_seconds", "train_seconds", "encode_seconds", "metrics_seconds"}
    assert saved["config"]["epochs"] == 2 and saved["config"]["codebook_sizes"] == [16, 16, 16]
    config = tokenizer.config
    assert config["method"] == "rq_vae" and config["num_items"] == 500 and config["embedding_dim"] == 384
    assert "{title}" in config["text_template"] and config["metrics"]["collision_rate"] == saved["collision_rate"]


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("config", ["tokenizer_random.yaml", "tokenizer_rqkmeans.yaml"])
def test_untrained_baselines_through_the_recipe(config, beauty500, cache_dir, tmp_path):
    from genrec.tokenizer import SIDTable, SIDTokenizer

    out = tmp_path / "tok"
    metrics = run_recipe(config, beauty500, cache_dir, out, "codebook_sizes=[8,8]", "epochs=99")  # epochs: unused, not an error
    table = SIDTable.load(out)
    assert len(table) == 500 and table.depth == 3
    assert metrics["max_group_size"] == table.codebook_sizes[2]
    assert SIDTokenizer.from_pretrained(out).method == ("random" if "random" in config else "rq_kmeans")
    assert ("recon_error" in metrics) == ("rqkmeans" in config)


@pytest.mark.slow
@needs_data
def test_embed_only_fills_the_cache_and_writes_no_tokenizer(beauty500, cache_dir, tmp_path, monkeypatch):
    from genrec.data import embed_texts

    out = tmp_path / "tok"
    report = train_tokenizer.main(["--config", str(ROOT / "recipes/configs/tokenizer_rqvae.yaml"), f"dataset={beauty500}",
                                   f"output_dir={out}", f"embedding_cache_dir={cache_dir}", "--embed-only"])
    assert report["items"] == 500 and report["embedding_dim"] == 384 and not out.exists()
    monkeypatch.setattr("genrec.data.embed._encode", lambda *a, **k: pytest.fail("a text was not in the cache"))
    from genrec.data import item_texts, load_dataset

    texts = item_texts(load_dataset(str(beauty500)).items, on_empty="item_id")
    assert embed_texts(texts, cache_dir=cache_dir, show_progress=False).shape == (500, 384)
    monkeypatch.setenv("WORLD_SIZE", "2")  # under accelerate launch only --embed-only shares its work
    with pytest.raises(SystemExit, match="--embed-only"):
        train_tokenizer.main(["--config", str(ROOT / "recipes/configs/tokenizer_rqvae.yaml"), f"dataset={beauty500}"])


def test_config_errors_are_clear():
    config = ROOT / "recipes/configs/tokenizer_rqvae.yaml"
    with pytest.raises(ConfigError, match="unknown key 'fit'"):
        load_config(train_tokenizer.TrainTokenizerConfig, config, ["fit.epochs=3"])
    cfg = load_config(train_tokenizer.TrainTokenizerConfig, config, ["quantizer.latnt_dim=16"])
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) \['latnt_dim'\] for method 'rq_vae'; valid: .*'latent_dim'"):
        train_tokenizer.build_quantizer_from_config(cfg, input_dim=384)
    cfg = load_config(train_tokenizer.TrainTokenizerConfig, config, ["quantizer.seed=3"])
    with pytest.raises(ConfigError, match=r"\['seed'\] are set at the top level"):
        train_tokenizer.build_quantizer_from_config(cfg, input_dim=384)
    cfg = load_config(train_tokenizer.TrainTokenizerConfig, config, ["method=nope"])
    with pytest.raises(ValueError, match="unknown tokenizer method 'nope'"):
        train_tokenizer.build_quantizer_from_config(cfg, input_dim=384)
    quantizer = train_tokenizer.build_quantizer_from_config(load_config(train_tokenizer.TrainTokenizerConfig, config, []), input_dim=384)
    assert quantizer.input_dim == 384 and quantizer.codebook_sizes == (256, 256, 256) and quantizer.hidden_dims == (512, 256, 128)


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("config", ["tokenizer_quasid.yaml", "tokenizer_adasid.yaml", "tokenizer_letter.yaml"])
def test_regularised_recipes_log_every_term_and_record_it(config, beauty500, cache_dir, tmp_path):
    from genrec.tokenizer import SIDTokenizer

    out = tmp_path / "tok"
    run_recipe(config, beauty500, cache_dir, out, "codebook_sizes=[16,16,16]", "epochs=2", "batch_size=128",
               "cf.epochs=1", f"cf.cache_dir={tmp_path / 'cf'}")
    saved = json.loads((out / "metrics.json").read_text())
    expected_terms = {"tokenizer_quasid.yaml": {"rep", "cf"}, "tokenizer_adasid.yaml": {"rep", "cf"},
                      "tokenizer_letter.yaml": {"cf", "div"}}[config]
    for term in expected_terms:
        assert len(saved["history"][term]) == 2, term  # one value per epoch
    assert ("rep" in saved["history"]) == ("rep" in expected_terms)
    record = SIDTokenizer.from_pretrained(out).regularizers
    assert set(record["sections"]) >= ({"repulsion"} if "rep" in expected_terms else {"diversity"})
    assert record["cf"]["source"].startswith("training split") and record["cf"]["dim"] == 64
    assert list((tmp_path / "cf" / "cf").glob("mf-d64-*.safetensors"))  # CF embeddings were cached


@pytest.mark.slow
@needs_data
def test_regulariser_config_errors(beauty500, cache_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown regulariser preset 'quasi'"):
        run_recipe("tokenizer_rqvae.yaml", beauty500, cache_dir, tmp_path / "a", "codebook_sizes=[8,8]", "epochs=1", "regularizers=quasi")
    with pytest.raises(ConfigError, match="group_column: the item table has no column 'shelf'"):
        run_recipe("tokenizer_rqvae.yaml", beauty500, cache_dir, tmp_path / "b", "codebook_sizes=[8,8]", "epochs=1",
                   "regularizers={repulsion: {masks: [self, group]}}", "group_column=shelf")
    with pytest.raises(ConfigError, match="method 'random' is not trained"):
        run_recipe("tokenizer_random.yaml", beauty500, cache_dir, tmp_path / "c", "codebook_sizes=[8,8]", "regularizers=quasid")
    with pytest.raises(ConfigError, match=r"cf: .*unexpected keyword argument 'dimension'"):
        run_recipe("tokenizer_quasid.yaml", beauty500, cache_dir, tmp_path / "d", "codebook_sizes=[8,8]", "epochs=1", "cf.dimension=8")
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()  # nothing written on a config error


@pytest.mark.slow
@needs_data
def test_cold_start_holdout_trains_on_warm_items_only(beauty500, cache_dir, tmp_path):
    """The quantiser of a hold-out run equals one fitted on the warm rows alone; cold items get fresh unique SIDs."""
    import torch

    from genrec.data import embed_texts, item_texts, load_dataset
    from genrec.data.split import select_cold_items
    from genrec.data.text import default_template
    from genrec.tokenizer import RQVAE, SIDTokenizer

    out = tmp_path / "tok"
    run_recipe("tokenizer_rqvae.yaml", beauty500, cache_dir, out, "codebook_sizes=[16,16,16]", "epochs=2", "batch_size=128",
               "cold_item_fraction=0.2", "cold_item_seed=4")
    dataset = load_dataset(beauty500)
    cold = select_cold_items(len(dataset.item_ids), 0.2, seed=4)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["cold_item_ids"] == [i for i, c in zip(dataset.item_ids, cold, strict=True) if c] and len(saved["cold_item_ids"]) == 100

    x = torch.from_numpy(embed_texts(item_texts(dataset.items, default_template(dataset.items)), cache_dir=cache_dir))
    reference = RQVAE(input_dim=x.shape[1], codebook_sizes=[16, 16, 16], seed=0)
    reference.fit(x[torch.from_numpy(~cold)], epochs=2, batch_size=128, lr=1e-3, device="cpu", show_progress=False)
    tok = SIDTokenizer.from_pretrained(out)
    for key, value in reference.state_dict().items():
        assert torch.equal(tok.quantizer.state_dict()[key], value), key  # trained on the warm rows only
    assert tok.item_ids == list(dataset.item_ids)  # catalogue order
    assert torch.equal(tok.sids[:, :-1], reference.encode(x))
    assert len({tuple(s) for s in tok.sids.tolist()}) == len(tok)  # cold items got unique SIDs
    # Cold dedup codes continue after the warm items sharing their codes.
    warm_sids = tok.sids[torch.from_numpy(~cold)]
    for row in tok.sids[torch.from_numpy(cold)]:
        same = warm_sids[(warm_sids[:, :-1] == row[:-1]).all(dim=1)]
        assert len(same) == 0 or row[-1] > same[:, -1].max()
