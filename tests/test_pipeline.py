"""GenerativeRecommender: save/reload exactness, recipe-equal inputs, bad inputs, broken bundles, run folders, Hub push;
recipes/evaluate_genrec.py on every run type.

Most tests run on a tiny synthetic catalogue (60 items, RQ-KMeans SIDs 4x4 + dedup) with a tiny T5
trained for a few steps. The recipe-run tests train tiny causal and LoRA runs (a tiny local Llama with
item titles and a prompt, a tiny local T5 with titles) with recipes/train_genrec.py on _genrec_tiny's
dataset (48 users, 30 titled items).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from genrec.data import (
    CausalCollator,
    Examples,
    Seq2SeqCollator,
    build_causal_dataset,
    build_seq2seq_dataset,
    leave_one_out_split,
    load_dataset,
)
from genrec.decoding import (
    ColdCatalogue,
    PrefixTrie,
    constrained_beam_search,
    constrained_beam_search_causal,
    score_all_items,
    search,
)
from genrec.inputs import encode_histories
from genrec.models import T5RecConfig, TokenSpace, build_t5
from genrec.models.t5 import prompt_eos_id
from genrec.pipeline import (
    CONFIG_FILE,
    EmptyHistoryError,
    GenerationSettings,
    GenerativeRecommender,
    PopularItems,
    Recommendation,
    UnknownItemError,
)
from genrec.runs import open_run
from genrec.tokenizer import RQKMeans, SIDTokenizer
from genrec.vocab import SIDVocab
from tests.helpers import DIM, NUM_ITEMS, synthetic_interactions, write_dataset
from tests.hub_server import HubServer

pytestmark = pytest.mark.usefixtures("single_thread")

TINY_T5 = T5RecConfig(d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16, d_ff=64, dropout_rate=0.0)


def tiny_tokenizer(seed: int = 0, levels=(4, 4)) -> SIDTokenizer:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(NUM_ITEMS, DIM, generator=g)
    quantizer = RQKMeans(levels, seed=0)
    quantizer.fit(x)
    return SIDTokenizer.from_quantizer(quantizer, [f"item{i}" for i in range(NUM_ITEMS)], x, training_data="synthetic")


def train_steps(model, dataset, collator, steps: int = 15, seed: int = 0) -> None:
    """A few AdamW steps on the seq2seq/causal rows, so the model is 'trained' rather than random."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    rows = dataset.to_list()
    for step in range(steps):
        batch = collator([rows[(step * 16 + j) % len(rows)] for j in range(16)])
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.fixture(scope="module")
def setup():
    """Tokenizer, vocab, leave-one-out split of the synthetic data, trained tiny T5, and its recommender."""
    tokenizer = tiny_tokenizer()
    vocab = SIDVocab(tokenizer.codebook_sizes, num_user_tokens=7)
    split = leave_one_out_split(synthetic_interactions(), item_ids=tokenizer.item_ids, max_history=5)
    item_tokens = vocab.codes_to_tokens(tokenizer.sids)
    torch.manual_seed(0)
    model = build_t5(vocab, TINY_T5)
    train_steps(model, build_seq2seq_dataset(split.train, item_tokens, add_user_token=vocab.user_token), Seq2SeqCollator())
    popular = PopularItems.from_sequences(split.item_ids, split.train_item_sequences(), top=20)
    rec = GenerativeRecommender(model, tokenizer, vocab, max_history=5, generation=GenerationSettings(num_beams=12, batch_size=8),
                                popular_items=popular, user_ids=split.user_ids, training_data="synthetic: 40 users",
                                metrics={"test": {"recall@10": 0.25, "ndcg@10": 0.125}},
                                evaluation={"protocol": "leave-one-out", "num_beams": 12}, device="cpu")
    return {"tokenizer": tokenizer, "vocab": vocab, "split": split, "item_tokens": item_tokens, "rec": rec}


def histories_of(split, examples: Examples) -> list[list[str]]:
    return [[split.item_ids[i] for i in h] for h in examples.histories()]


def assert_same(a: list[Recommendation], b: list[Recommendation]) -> None:
    assert [r.item_ids for r in a] == [r.item_ids for r in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-5, atol=1e-5)
        assert (x.user_id, x.source, x.unknown_item_ids) == (y.user_id, y.source, y.unknown_item_ids)


# ---------------------------------------------------------------------------------------------- exactness


def test_recommend_equals_beam_search_on_the_recipe_inputs(setup):
    """Test users' histories through the pipeline == constrained beam search on build_seq2seq_dataset rows (the recipe's input)."""
    rec, split, vocab, tokens = setup["rec"], setup["split"], setup["vocab"], setup["item_tokens"]
    dataset = build_seq2seq_dataset(split.test, tokens, add_user_token=vocab.user_token)
    batch = Seq2SeqCollator()(dataset.to_list())
    items, scores = constrained_beam_search(rec.model, batch["input_ids"], batch["attention_mask"], PrefixTrie.from_item_tokens(tokens, vocab),
                                            num_beams=12, top_k=10)
    out = rec.recommend(histories_of(split, split.test), k=10, user_ids=split.user_ids, exclude_seen=False)
    assert [r.item_ids for r in out] == [[split.item_ids[i] for i in row] for row in items.tolist()]
    np.testing.assert_allclose([r.scores for r in out], scores.numpy(), rtol=1e-5, atol=1e-5)
    assert all(r.source == "model" and r.user_id == u for r, u in zip(out, split.user_ids, strict=True))


def test_full_width_beams_equal_the_exhaustive_ranking(setup):
    rec, split, vocab, tokens = setup["rec"], setup["split"], setup["vocab"], setup["item_tokens"]
    dataset = build_seq2seq_dataset(split.test, tokens, add_user_token=vocab.user_token)
    batch = Seq2SeqCollator()(dataset.to_list()[:6])
    exhaustive = score_all_items(rec.model, batch["input_ids"], batch["attention_mask"], tokens, vocab=vocab)
    out = rec.recommend(histories_of(split, split.test)[:6], k=5, user_ids=split.user_ids[:6], exclude_seen=False, num_beams=NUM_ITEMS)
    for row, r in zip(exhaustive, out, strict=True):
        best = sorted(range(NUM_ITEMS), key=lambda i: (-row[i].item(), i))[:5]
        assert r.item_ids == [split.item_ids[i] for i in best]
        np.testing.assert_allclose(r.scores, row[best].numpy(), rtol=1e-4, atol=1e-4)


def test_exact_search_recommends_the_exhaustive_ranking(setup):
    """recommend(search="exact") with narrow starting beams: the exhaustive top k, certified by the search."""
    rec, split, vocab, tokens = setup["rec"], setup["split"], setup["vocab"], setup["item_tokens"]
    dataset = build_seq2seq_dataset(split.test, tokens, add_user_token=vocab.user_token)
    batch = Seq2SeqCollator()(dataset.to_list()[:12])
    exhaustive = score_all_items(rec.model, batch["input_ids"], batch["attention_mask"], tokens, vocab=vocab)
    out = rec.recommend(histories_of(split, split.test)[:12], k=5, user_ids=split.user_ids[:12], num_beams=5, search="exact")
    for row, r in zip(exhaustive, out, strict=True):
        best = sorted(range(NUM_ITEMS), key=lambda i: (-row[i].item(), i))[:5]
        assert r.item_ids == [split.item_ids[i] for i in best]
    with pytest.raises(ValueError, match="search must be one of"):
        rec.recommend(histories_of(split, split.test)[:2], k=5, search="greedy")


def test_saved_bundle_reloads_to_the_same_recommendations(setup, tmp_path):
    rec, split = setup["rec"], setup["split"]
    histories = histories_of(split, split.test)
    users = [*split.user_ids[:-3], "new-user", None, "user3"]
    before = rec.recommend(histories, k=10, user_ids=users)
    folder = rec.save_pretrained(tmp_path / "bundle")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", CONFIG_FILE, "model", "popular_items.json", "tokenizer", "user_ids.json"]
    assert (folder / "model" / "model.safetensors").is_file() and (folder / "tokenizer" / "sid_table.safetensors").is_file()
    assert not list(tmp_path.glob(".*"))  # no staging folder left
    loaded = GenerativeRecommender.from_pretrained(folder, device="cpu")
    assert loaded.model_type == "t5" and loaded.config == json.loads(json.dumps(rec.config))
    assert_same(loaded.recommend(histories, k=10, user_ids=users), before)
    # Batching and order do not change anything: one history at a time, reversed, gives the same lists.
    single = [loaded.recommend([h], k=10, user_ids=[u], batch_size=1)[0] for h, u in zip(histories[::-1], users[::-1], strict=True)]
    assert_same(single[::-1], before)
    # The model card carries the metrics; the config the decoding settings.
    card = (folder / "README.md").read_text()
    assert "recommendation_metrics:" in card and "recall@10: 0.25" in card and "| recall@10 | 0.2500 |" in card
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["generation"] == {"num_beams": 12, "normalization": "vocab", "batch_size": 8, "search": "beam", "max_width": 512,
                                    "cold_start": {"method": "off", "epsilon": 0.1, "num_beams": 20, "drafts": 20,
                                                   "content_weight": 0.0, "score_offset": 0.0, "placement": "score",
                                                   "history_decay": 1.0, "fusion_weight": 1.0, "cold_boost": 1.0}}
    assert config["max_history"] == 5
    # Without the user ids every user is hashed; saving again over the bundle replaces it.
    anonymous = GenerativeRecommender.from_pretrained(rec.save_pretrained(tmp_path / "anonymous", include_user_ids=False), device="cpu")
    assert not (tmp_path / "anonymous" / "user_ids.json").exists() and anonymous.user_ids is None
    assert anonymous.user_index("user5") == zlib.crc32(b"user5") and rec.user_index("user5") == 5
    rec.save_pretrained(folder)
    assert_same(GenerativeRecommender.from_pretrained(folder, device="cpu").recommend(histories[:3], k=10, user_ids=users[:3]), before[:3])


def test_user_tokens_follow_training_order_then_hash(setup):
    rec = setup["rec"]
    assert rec.user_index("user0") == 0 and rec.user_index("user5") == setup["split"].user_ids.index("user5")
    assert rec.user_index(None) == 0
    assert rec.user_index("someone-new") == rec.user_index("someone-new") != rec.user_index("someone-else")


def test_exclude_seen_and_k(setup):
    rec, split = setup["rec"], setup["split"]
    histories = histories_of(split, split.test)[:10]
    default = rec.recommend(histories, k=10, num_beams=40)  # as evaluation ranks: seen items allowed
    assert default == rec.recommend(histories, k=10, num_beams=40, exclude_seen=False)
    for r, h in zip(rec.recommend(histories, k=10, num_beams=40, exclude_seen=True), histories, strict=True):
        assert not set(r.item_ids) & set(h) and len(r.item_ids) == 10
        assert r.scores == sorted(r.scores, reverse=True)
    with_seen = rec.recommend(histories, k=30, exclude_seen=False)  # k above the bundle's 12 beams: k beams are used
    assert all(len(r.item_ids) == 30 for r in with_seen)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        rec.recommend(histories, k=0)
    with pytest.raises(ValueError, match="num_beams must be a positive integer"):
        rec.recommend(histories, k=5, num_beams=-3)  # was silently read as k beams


# ---------------------------------------------------------------------------------------------- bad inputs


def test_unknown_ids_are_skipped_and_counted_or_strict(setup, caplog):
    rec = setup["rec"]
    with caplog.at_level(logging.WARNING, logger="genrec.pipeline"):
        out = rec.recommend([["item1", "nope", "item2", "gone"], ["item3"], ["item7"]], k=5, user_ids=["a", "b", None])
    assert out[0].unknown_item_ids == ["nope", "gone"] and out[0].num_unknown == 2 and out[1].num_unknown == 0
    assert "skipped 2 unknown item id(s) in 1 of 3 request(s): request 0 (user 'a'): 2" in caplog.text
    # Unknown ids do not change the recommendation: same as the history without them.
    assert_same([rec.recommend([["item1", "item2"]], k=5, user_ids=["a"])[0]], [Recommendation(out[0].item_ids, out[0].scores, "a")])
    with pytest.raises(UnknownItemError, match=r"request 1 \(user 'b'\): 1 item id\(s\) not in the catalogue of 60 items: \['x'\]") as err:
        rec.recommend([["item1"], ["item2", "x"]], user_ids=["a", "b"], strict=True)
    assert err.value.request_index == 1 and err.value.unknown_item_ids == ["x"]
    with pytest.raises(TypeError, match=r"request 0: history\[1\] must be an item id"):
        rec.recommend([["item1", 3.5]])
    with pytest.raises(TypeError, match=r"flat list of item ids: pass \[history\]"):
        rec.recommend(["item1", "item2"])


def test_integer_ids_are_read_as_strings(setup):
    tokenizer = SIDTokenizer(setup["tokenizer"].quantizer, type(setup["tokenizer"].table)(
        [str(i) for i in range(NUM_ITEMS)], setup["tokenizer"].sids, setup["tokenizer"].codebook_sizes), embedding_dim=DIM)
    rec = GenerativeRecommender(setup["rec"].model, tokenizer, setup["vocab"], max_history=5, device="cpu")
    assert_same(rec.recommend([[1, 2, 3]], k=4), rec.recommend([["1", "2", "3"]], k=4))


def test_empty_histories_error_or_popular(setup):
    rec, split = setup["rec"], setup["split"]
    with pytest.raises(EmptyHistoryError, match=r"request 1 \(user 'b'\): an empty history; nothing to recommend from"):
        rec.recommend([["item1"], []], user_ids=["a", "b"])
    with pytest.raises(EmptyHistoryError, match=r"request 0: only unknown item ids \(2\)"):
        rec.recommend([["x", "y"]])
    out = rec.recommend([[], ["x"], ["item4"]], k=5, empty_history="popular")
    counts = np.bincount(np.concatenate(split.train_sequences), minlength=NUM_ITEMS)
    expected = sorted(range(NUM_ITEMS), key=lambda i: (-counts[i], i))[:5]
    for r in out[:2]:
        assert r.source == "popular" and r.item_ids == [split.item_ids[i] for i in expected]
        np.testing.assert_allclose(r.scores, np.log(counts[expected] / counts.sum()))
    assert out[1].unknown_item_ids == ["x"] and out[2].source == "model"
    bare = GenerativeRecommender(rec.model, rec.tokenizer, rec.vocab, max_history=5, device="cpu")
    with pytest.raises(EmptyHistoryError, match="has no popular items"):
        bare.recommend([[]], empty_history="popular")
    with pytest.raises(ValueError, match="empty_history must be 'error' or 'popular'"):
        rec.recommend([[]], empty_history="zero")


# ---------------------------------------------------------------------------------------------- broken bundles


def _break(folder: Path, case: str) -> None:
    if case == "missing_weights":
        (folder / "model" / "model.safetensors").unlink()
    elif case == "missing_tokenizer_file":
        (folder / "tokenizer" / "sid_items.json").unlink()
    elif case == "missing_config":
        (folder / CONFIG_FILE).unlink()
    elif case in ("wrong_version", "unknown_model_type", "vocab_mismatch", "space_disagrees", "missing_key"):
        config = json.loads((folder / CONFIG_FILE).read_text())
        if case == "wrong_version":
            config["format_version"] = 99
        elif case == "unknown_model_type":
            config["model_type"] = "rnn"
        elif case == "vocab_mismatch":  # a model trained on another tokenizer's levels
            config["vocab"]["codebook_sizes"] = [4, 4, 99]
            config["token_space"] = TokenSpace.from_vocab(SIDVocab.from_dict(config["vocab"])).to_dict()
        elif case == "space_disagrees":
            config["token_space"]["eos_id"] = 7
        else:
            del config["generation"]
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    elif case == "truncated_config":
        (folder / CONFIG_FILE).write_text('{"format_version": 1, "model_')
    elif case == "truncated_weights":
        path = folder / "model" / "model.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    elif case == "wrong_weights":
        save_file({"shared.weight": torch.zeros(3, 3)}, folder / "model" / "model.safetensors", metadata={"format": "pt"})
    elif case == "pickle":
        torch.save({"w": torch.zeros(2)}, folder / "model" / "pytorch_model.bin")
    elif case == "popular_missing":
        (folder / "popular_items.json").unlink()
    elif case == "user_ids_not_strings":  # numbers would never match a request's (string) user id
        users = json.loads((folder / "user_ids.json").read_text())
        users["user_ids"][3] = 12345
        (folder / "user_ids.json").write_text(json.dumps(users))


BAD_BUNDLES = {
    "missing_weights": (FileNotFoundError, r"missing file model/model\.safetensors"),
    "missing_tokenizer_file": (FileNotFoundError, r"missing file tokenizer/sid_items\.json"),
    "missing_config": (FileNotFoundError, r"neither a genrec recommender bundle \(no genrec_config\.json\) nor a train_genrec\.py run"),
    "wrong_version": (ValueError, r"genrec_config\.json: unsupported format_version 99; this genrec reads version 1"),
    "unknown_model_type": (ValueError, r"genrec_config\.json: unknown model_type 'rnn'; this genrec supports \['causal', 'lora', 't5'\]"),
    "vocab_mismatch": (ValueError, r"SID levels \(4, 4, \d+\) differ from the vocabulary's \(4, 4, 99\)"),
    "space_disagrees": (ValueError, r"genrec_config\.json: vocab and token_space disagree"),
    "missing_key": (ValueError, r"genrec_config\.json: missing key\(s\) \['generation'\]"),
    "truncated_config": (ValueError, r"genrec_config\.json: not valid JSON"),
    "truncated_weights": (ValueError, r"model: cannot load the t5 model"),
    "wrong_weights": (ValueError, r"model: cannot load the t5 model"),
    "pickle": (ValueError, r"pickle-based file\(s\) \['model/pytorch_model\.bin'\]"),
    "popular_missing": (FileNotFoundError, r"missing file popular_items\.json"),
    "user_ids_not_strings": (ValueError, r"user_ids\.json: user ids must be strings .*found 12345"),
}


@pytest.fixture(scope="module")
def saved_bundle(setup, tmp_path_factory):
    return setup["rec"].save_pretrained(tmp_path_factory.mktemp("saved") / "bundle")


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_broken_bundles_get_clear_errors(saved_bundle, tmp_path, case):
    import shutil

    folder = Path(shutil.copytree(saved_bundle, tmp_path / "bundle"))
    _break(folder, case)
    error, message = BAD_BUNDLES[case]
    with pytest.raises(error, match=message):
        GenerativeRecommender.from_pretrained(folder, device="cpu")


def test_save_refuses_a_foreign_folder_and_checks_the_tokenizer(setup, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and not a genrec recommender bundle"):
        setup["rec"].save_pretrained(tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    other = tiny_tokenizer(levels=(3, 3))
    with pytest.raises(ValueError, match="the model was trained on another tokenizer"):
        GenerativeRecommender(setup["rec"].model, other, setup["vocab"], device="cpu")
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a valid Hub repo id"):
        GenerativeRecommender.from_pretrained(tmp_path / "no" / "such" / "bundle")


# ---------------------------------------------------------------------------------------------- run folders


def _cold_start_run(setup, tmp_path):
    """A run folder of the setup's model under the cold-start protocol (25% of the items held out, seed 3)."""
    from genrec.data.split import cold_item_mask

    rec = setup["rec"]
    data = write_dataset(tmp_path / "data" / "synthetic", synthetic_interactions())
    dataset = load_dataset(data)
    cold = cold_item_mask(len(dataset.item_ids), 0.25, 3)
    tok_dir = setup["tokenizer"].save_pretrained(tmp_path / "tok")
    # what recipes/train_tokenizer.py records for a cold-start tokenizer (checked against the run's cold items)
    (tok_dir / "metrics.json").write_text(json.dumps({"cold_item_ids": [i for i, c in zip(dataset.item_ids, cold, strict=True) if c]}))
    run = tmp_path / "run"
    rec.model.save_pretrained(run / "best")
    (run / "config.json").write_text(json.dumps({"dataset": str(data), "data_dir": None, "tokenizer_dir": str(tok_dir), "max_history": 5,
                                                 "num_user_tokens": 7, "cold_item_fraction": 0.25, "cold_item_seed": 3,
                                                 "eval": {"num_beams": 12, "ks": [5, 10]}}))
    (run / "vocab.json").write_text(json.dumps(setup["vocab"].sid_layout_dict()))
    return run, dataset, cold


def test_cold_start_run_bundle_counts_only_interactions_training_saw(setup, tmp_path):
    """A cold-start run (cold_item_fraction > 0) held its cold items and their interactions out of training: the
    popular-items fallback and the training users of its bundle come from that split, never from the full data."""
    run, dataset, cold = _cold_start_run(setup, tmp_path)
    loaded = GenerativeRecommender.from_pretrained(run, device="cpu")
    held_out = leave_one_out_split(dataset, max_history=5, cold_items=cold)
    everything = leave_one_out_split(dataset, max_history=5)
    expected = PopularItems.from_sequences(held_out.item_ids, held_out.train_item_sequences())
    assert loaded.popular_items == expected and loaded.user_ids == held_out.user_ids
    cold_ids = {item for item, c in zip(dataset.item_ids, cold, strict=True) if c}
    assert cold_ids and not cold_ids & set(loaded.popular_items.item_ids)
    # the bug this guards against: counting every training interaction, cold items included
    wrong = PopularItems.from_sequences(everything.item_ids, everything.train_item_sequences())
    assert loaded.popular_items.total < wrong.total and cold_ids & set(wrong.item_ids)
    out = loaded.recommend([[]], k=5, empty_history="popular")[0]
    assert out.source == "popular" and not cold_ids & set(out.item_ids)


def test_cold_items_are_recommended_by_prefix_matching_and_survive_the_bundle(setup, tmp_path):
    """The run's cold items (and items added after training) reach the lists with cold_start prefix matching, capped by
    epsilon; off reproduces plain decoding; the bundle keeps its warm items and the setting."""
    from genrec.decoding import ColdStartSettings

    run, dataset, cold = _cold_start_run(setup, tmp_path)
    loaded = GenerativeRecommender.from_pretrained(run, device="cpu")
    held_out = leave_one_out_split(dataset, max_history=5, cold_items=cold)
    trained = {held_out.item_ids[i] for seq in held_out.train_item_sequences() for i in seq}
    # cold = no training interaction: the held-out items, and items seen only as validation / test targets
    cold_ids = [item for item in dataset.item_ids if item not in trained]
    assert loaded.cold_item_ids == cold_ids and {i for i, c in zip(dataset.item_ids, cold, strict=True) if c} <= set(cold_ids)
    split = setup["split"]
    histories, users = histories_of(split, split.test), split.user_ids
    plain = loaded.recommend(histories, k=10, user_ids=users)
    assert_same(loaded.recommend(histories, k=10, user_ids=users, cold_start={"method": "off"}), plain)
    assert_same(loaded.recommend(histories, k=10, user_ids=users, cold_start={"method": "prefix", "epsilon": 0.0}), plain)
    # (this tiny model saw every item in training, so its plain lists already hold 3-4 "cold" items: a high cap)
    capped = loaded.recommend(histories, k=10, user_ids=users, cold_start=ColdStartSettings(method="prefix", epsilon=0.5))
    plain_cold = [len(set(r.item_ids) & set(cold_ids)) for r in plain]
    got_cold = [len(set(r.item_ids) & set(cold_ids)) for r in capped]
    assert all(g <= max(5, p) for g, p in zip(got_cold, plain_cold, strict=True))
    assert sum(got_cold) > sum(plain_cold)  # prefix matching brings cold items in
    with pytest.raises(ValueError, match="content vectors, and this recommender has none"):
        loaded.recommend(histories[:1], cold_start={"method": "content"})

    # The setting and the warm items travel with the bundle.
    loaded.generation.cold_start = ColdStartSettings(method="prefix", epsilon=0.5)
    bundle = loaded.save_pretrained(tmp_path / "bundle")
    again = GenerativeRecommender.from_pretrained(bundle, device="cpu")
    assert again.warm_item_ids == loaded.warm_item_ids and again.generation.cold_start == loaded.generation.cold_start
    assert_same(again.recommend(histories, k=10, user_ids=users), capped)

    # An item added after deployment is cold and recommendable at once, without retraining (here every other item is
    # warm, so it is the only cold item).
    deployed = GenerativeRecommender(again.model, again.tokenizer, again.space, max_history=5, user_ids=again.user_ids,
                                     warm_item_ids=again.item_ids, device="cpu")
    before = deployed.recommend(histories, k=10, user_ids=users)
    embedding = torch.randn(1, DIM, generator=torch.Generator().manual_seed(5))
    (sid,) = deployed.add_items(["new-item"], embedding)
    assert deployed.cold_item_ids == ["new-item"] and deployed.num_items == len(dataset.item_ids) + 1
    assert tuple(deployed.tokenizer.sid("new-item")) == sid
    off = deployed.recommend(histories, k=10, user_ids=users)
    on = deployed.recommend(histories, k=10, user_ids=users, cold_start={"method": "prefix", "epsilon": 0.1})
    assert sum("new-item" in r.item_ids for r in off) == 0 and [r.item_ids for r in off] == [r.item_ids for r in before]
    assert sum("new-item" in r.item_ids for r in on) > len(on) // 2
    assert all(r.item_ids.count("new-item") <= 1 for r in on)
    with pytest.raises(ValueError, match="new-item"):
        deployed.add_items(["new-item"], embedding)


def test_content_cold_start_in_recommend_the_bundle_and_added_items(setup, tmp_path):
    """The "content" method serves as evaluation ranks (the same lists as genrec.decoding.search with the cold
    catalogue and the histories), its content vectors travel with the bundle, and an item added after deployment
    brings its vector along and is drafted by content at once."""
    from genrec.decoding import ColdStartSettings

    run, dataset, cold = _cold_start_run(setup, tmp_path)
    vectors = torch.randn(len(dataset.item_ids), DIM, generator=torch.Generator().manual_seed(9))
    loaded = GenerativeRecommender.from_pretrained(run, device="cpu", item_embeddings=vectors)
    split = setup["split"]
    histories, users = histories_of(split, split.test)[:12], split.user_ids[:12]
    settings = ColdStartSettings(method="content", epsilon=0.2, drafts=6, content_weight=3.0, score_offset=-1.0, placement="tail")
    fusion = ColdStartSettings(method="fusion", epsilon=0.3, drafts=15, history_decay=0.5, fusion_weight=1.5, cold_boost=2.0)
    got = loaded.recommend(histories, k=10, user_ids=users, cold_start=settings)
    fused = loaded.recommend(histories, k=10, user_ids=users, cold_start=fusion)

    # The same lists from the decoding functions evaluation uses, one user at a time.
    catalogue = ColdCatalogue(loaded.item_tokens, torch.tensor([i in set(loaded.cold_item_ids) for i in loaded.item_ids]),
                              loaded.space.level_ranges, item_embeddings=vectors)
    for history, user, result, fused_result in zip(histories, users, got, fused, strict=True):
        index = [loaded.item_ids.index(i) for i in history][-5:]
        examples = Examples(user_index=np.array([loaded.user_index(user)]), target=np.zeros(1, dtype=np.int64),
                            history_values=np.array(index), history_offsets=np.array([0, len(index)]))
        eos = prompt_eos_id(loaded.model.config, loaded.space.eos_id) is not None
        ids, mask = encode_histories(examples, loaded.item_tokens, loaded.space, None, eos=eos)
        for cold_start, served in ((settings, result), (fusion, fused_result)):
            found = search(loaded.model, ids, mask, loaded.trie, top_k=10, cold_catalogue=catalogue,
                           settings=GenerationSettings(num_beams=loaded.generation.num_beams, cold_start=cold_start),
                           history_items=torch.tensor([index]))
            assert served.item_ids == [loaded.item_ids[i] for i in found.items[0].tolist() if i >= 0]
    assert any(set(r.item_ids) & set(loaded.cold_item_ids) for r in got)
    assert any(set(r.item_ids) & set(loaded.cold_item_ids) for r in fused)

    bundle = loaded.save_pretrained(tmp_path / "bundle")
    again = GenerativeRecommender.from_pretrained(bundle, device="cpu")
    assert torch.equal(again.item_embeddings, vectors)
    assert [r.item_ids for r in again.recommend(histories, k=10, user_ids=users, cold_start=settings)] == [r.item_ids for r in got]
    with pytest.raises(ValueError, match="rebuilds a run folder's vectors"):
        GenerativeRecommender.from_pretrained(bundle, device="cpu", item_embeddings="text")
    with pytest.raises(ValueError, match="records no text template"):  # this tokenizer was trained on random vectors
        GenerativeRecommender.from_pretrained(run, device="cpu", item_embeddings="text")
    with pytest.raises(ValueError, match=rf"item_embeddings must be \({len(dataset.item_ids)}, d\)"):
        GenerativeRecommender.from_pretrained(run, device="cpu", item_embeddings=vectors[:-1])

    # A new item whose vector points where a history does (cosine 1) is that history's best draft.
    history = histories[0]
    direction = torch.nn.functional.normalize(vectors[[loaded.item_ids.index(i) for i in history][-5:]], dim=1).sum(0, keepdim=True)
    again.add_items(["new-item"], direction)
    assert again.item_embeddings.shape == (len(dataset.item_ids) + 1, DIM) and torch.equal(again.item_embeddings[-1:], direction)
    drafted = again.recommend([history], k=10, user_ids=users[:1],  # (the plain lists already hold "cold" items: cap 10)
                              cold_start={"method": "content", "epsilon": 1.0, "drafts": 1, "content_weight": 100.0})
    assert "new-item" in drafted[0].item_ids
    fused_new = again.recommend([history], k=10, user_ids=users[:1],
                                cold_start={"method": "fusion", "epsilon": 1.0, "drafts": 1, "cold_boost": 10.0})
    assert fused_new[0].item_ids[0] == "new-item"  # the content ranking's head, boosted above the model's first item
    wider = GenerativeRecommender(again.model, again.tokenizer, again.space, max_history=5, warm_item_ids=again.warm_item_ids,
                                  item_embeddings=torch.randn(again.num_items, DIM + 3), device="cpu")
    with pytest.raises(ValueError, match="must be made alike"):
        wider.add_items(["other"], torch.randn(1, DIM))


def test_training_run_folder_loads_with_popular_items_and_users(setup, tmp_path, caplog):
    """A train_genrec.py-style folder: best/ + config.json + vocab.json + metrics.json, tokenizer and dataset on disk."""
    rec, split = setup["rec"], setup["split"]
    data = write_dataset(tmp_path / "data" / "synthetic", synthetic_interactions())
    tok_dir = setup["tokenizer"].save_pretrained(tmp_path / "tok")
    run = tmp_path / "run"
    rec.model.save_pretrained(run / "best")
    (run / "config.json").write_text(json.dumps({"dataset": str(data), "data_dir": None, "tokenizer_dir": str(tok_dir), "max_history": 5,
                                                 "num_user_tokens": 7, "eval": {"num_beams": 12, "ks": [5, 10]}}))
    (run / "vocab.json").write_text(json.dumps(setup["vocab"].to_dict()))
    (run / "metrics.json").write_text(json.dumps({"test": {"recall@10": 0.5}, "validation": {"recall@10": 0.4}, "timings": {"test_users": 40}}))

    loaded = GenerativeRecommender.from_pretrained(run, device="cpu")
    assert loaded.user_ids == split.user_ids and loaded.popular_items.item_ids[:20] == rec.popular_items.item_ids
    assert loaded.metrics == {"validation": {"recall@10": 0.4}, "test": {"recall@10": 0.5}} and loaded.generation.num_beams == 12
    histories = histories_of(split, split.test)
    assert_same(loaded.recommend(histories, k=10, user_ids=split.user_ids),
                rec.recommend(histories, k=10, user_ids=split.user_ids))

    # An old-layout or moved tokenizer_dir: a clear error, and tokenizer= fixes it.
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "tokenizer_dir": str(tmp_path / "moved")}))
    with pytest.raises(FileNotFoundError, match=r"tokenizer_dir=.*moved' is not a folder .* pass tokenizer=PATH_OR_REPO_ID"):
        GenerativeRecommender.from_pretrained(run)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "tokenizer_config.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({**config, "tokenizer_dir": str(tmp_path / "old")}))
    with pytest.raises(ValueError, match="cannot load the run's tokenizer .*old .*missing file sid_tokenizer_config.json.*pass tokenizer="):
        GenerativeRecommender.from_pretrained(run)
    assert GenerativeRecommender.from_pretrained(run, tokenizer=tok_dir, device="cpu").num_items == NUM_ITEMS
    # model.type of newer runs must agree with best/: lora needs an adapter there, causal a decoder-only model.
    (run / "config.json").write_text(json.dumps({**config, "model": {"type": "lora"}}))
    with pytest.raises(ValueError, match=r"model.type='lora', but best/ holds no LoRA adapter"):
        GenerativeRecommender.from_pretrained(run)
    (run / "config.json").write_text(json.dumps({**config, "model": {"type": "causal"}}))
    with pytest.raises(ValueError, match="model.type='causal', but best/config.json holds a 't5' model"):
        GenerativeRecommender.from_pretrained(run)

    # Without its dataset the run still loads: no popular items, every user hashed (with a warning).
    (run / "config.json").write_text(json.dumps({**config, "dataset": str(tmp_path / "gone")}))
    with caplog.at_level(logging.WARNING, logger="genrec.pipeline"):
        bare = GenerativeRecommender.from_pretrained(run, device="cpu")
    assert bare.popular_items is None and bare.user_ids is None and "cannot load the run's dataset" in caplog.text
    assert load_dataset(data).item_ids == rec.item_ids


# ---------------------------------------------------------------------------------------------- decoder-only


def test_causal_model_bundle(setup, tmp_path):
    vocab, split, tokens = setup["vocab"], setup["split"], setup["item_tokens"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab.size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                         pad_token_id=0, bos_token_id=None, eos_token_id=1))
    train_steps(model, build_causal_dataset(split.train, tokens, add_user_token=vocab.user_token), CausalCollator(), steps=5)
    rec = GenerativeRecommender(model, setup["tokenizer"], vocab, max_history=5, generation=GenerationSettings(num_beams=12),
                                user_ids=split.user_ids, device="cpu")
    assert rec.model_type == "causal"
    # Without settings, decoder-only models decode in small batches (per-beam KV caches), T5 in large ones.
    assert GenerativeRecommender(model, setup["tokenizer"], vocab, max_history=5, device="cpu").generation.batch_size == 32
    assert GenerativeRecommender(setup["rec"].model, setup["tokenizer"], vocab, max_history=5, device="cpu").generation.batch_size == 256
    # Reference: constrained_beam_search_causal on the recipe's prompts, left-padded.
    rows = build_causal_dataset(split.test, tokens, add_user_token=vocab.user_token).to_list()
    prompts = CausalCollator(padding_side="left")([{"input_ids": r["input_ids"][: r["prompt_length"]], "labels": [-100] * r["prompt_length"]}
                                                   for r in rows])
    items, scores = constrained_beam_search_causal(model, prompts["input_ids"], prompts["attention_mask"],
                                                   PrefixTrie.from_item_tokens(tokens, vocab), num_beams=12, top_k=10)
    histories = histories_of(split, split.test)
    out = rec.recommend(histories, k=10, user_ids=split.user_ids, exclude_seen=False)
    assert [r.item_ids for r in out] == [[split.item_ids[i] for i in row] for row in items.tolist()]
    np.testing.assert_allclose([r.scores for r in out], scores.numpy(), rtol=1e-5, atol=1e-5)
    loaded = GenerativeRecommender.from_pretrained(rec.save_pretrained(tmp_path / "causal"), device="cpu")
    assert loaded.model_type == "causal" and json.loads((tmp_path / "causal" / CONFIG_FILE).read_text())["model_type"] == "causal"
    assert_same(loaded.recommend(histories, k=10, user_ids=split.user_ids, exclude_seen=False), out)


# ---------------------------------------------------------------------------------------------- recipe runs: causal, LoRA


def _test_requests(split) -> tuple[list[list[str]], list[str], list[int]]:
    """Histories, user ids and user indices of the split's test examples."""
    users = split.test.user_index.tolist()
    return histories_of(split, split.test), [split.user_ids[u] for u in users], users


@pytest.mark.slow
@pytest.mark.parametrize("name", ["causal", "causal_noeos", "t5_every", "t5_pooled", "lora_llama", "lora_t5", "lora_t5_full"])
def test_run_and_its_bundle_recommend_the_recipe_ranking(recipe_runs, tmp_path, name):
    """from_pretrained(run) == the recipe's evaluation ranking (items); its bundle == the run (items, allclose scores)."""
    from genrec.recipes import evaluate_genrec

    run = recipe_runs[name]
    loaded = evaluate_genrec.load_run(run, device="cpu")
    reference = evaluate_genrec.evaluate_run(loaded, "test", show_progress=False)
    assert reference.metrics == json.loads((run / "metrics.json").read_text())["test"]  # the recipe's own evaluation
    ranked = dict(zip(reference.user_index.tolist(), reference.ranked_items.tolist(), strict=True))

    rec = GenerativeRecommender.from_pretrained(run, device="cpu")
    lora = name.startswith("lora")
    base = name.split("_")[1] if lora else None  # the tiny pretrained checkpoint: llama | t5
    t5 = name.startswith("t5")  # a causal-encoder T5 trained on every item (prompts without eos), an item-pooled T5
    assert rec.model_type == ("lora" if lora else "t5" if t5 else "causal")
    if name.startswith("causal"):  # prompts end with </s> unless the run set model.causal.prompt_eos=false
        assert (loaded.inputs.test_ds[0]["input_ids"][-1] == rec.space.eos_id) == (name == "causal")
        assert getattr(rec.model.config, "genrec_prompt_eos", True) == (name == "causal")
    assert rec.architecture == ("seq2seq" if base == "t5" or t5 else "causal")
    assert (type(rec.model).__name__ == "ItemPooledT5") == (name == "t5_pooled")
    split = loaded.split
    histories, user_ids, users = _test_requests(split)
    out = rec.recommend(histories, k=10, user_ids=user_ids, exclude_seen=False)
    assert [r.item_ids for r in out] == [[split.item_ids[i] for i in ranked[u]] for u in users]
    if lora:  # the inputs mix item titles (and the Llama run's prompt) into the history, as the recipe did
        assert rec.text_inputs.item_text_tokens is not None and len(rec.text_inputs.item_text_tokens) == 30
        assert (rec.text_inputs.prompt == "the next item is") == (name == "lora_llama")
    seen = rec.recommend(histories, k=5, user_ids=user_ids)

    folder = rec.save_pretrained(tmp_path / "bundle")
    expected = {"README.md", CONFIG_FILE, "model", "popular_items.json", "tokenizer", "user_ids.json", "warm_items.json"}
    if lora:
        expected |= {"text_tokenizer", "item_text_tokens.safetensors"}
    assert {p.name for p in folder.iterdir()} == expected
    assert not list(folder.rglob("adapter_*")) and not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["token_space"] == open_run(run).token_space.to_dict()
    if lora:
        assert config["model_type"] == "lora" and config["vocab"] is None
        assert config["lora"]["architecture"] == rec.architecture and config["lora"]["base_model"].endswith(base)
        assert config["inputs"]["item_text_template"] == "{title}" and config["inputs"]["item_text_tokens"]["count"] == 30
        assert type(rec.model).__name__.startswith("PeftModel")  # saving merged a copy, not the recommender's model
    # The bundle is self-contained: it loads (and recommends the same) without the base checkpoint.
    pretrained = recipe_runs["root"] / base if lora else None
    if pretrained is not None:
        pretrained.rename(pretrained.with_name("moved"))
    try:
        bundle = GenerativeRecommender.from_pretrained(folder, device="cpu")
        assert bundle.model_type == rec.model_type and bundle.config == json.loads(json.dumps(rec.config))
        assert_same(bundle.recommend(histories, k=10, user_ids=user_ids, exclude_seen=False), out)
        assert_same(bundle.recommend(histories, k=5, user_ids=user_ids), seen)
    finally:
        if pretrained is not None:
            pretrained.with_name("moved").rename(pretrained)
    if lora:  # titles in the input: the run's item table is needed, a clear error without it
        import shutil

        broken = Path(shutil.copytree(run, tmp_path / "no_data", ignore=shutil.ignore_patterns("checkpoints")))
        # the dataset as recorded by the run's manifest (genrec.runs) has gone
        (broken / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), "dataset": str(tmp_path / "gone")}))
        with pytest.raises(ValueError, match=r"put item text \('\{title\}'\) into its inputs, which needs the dataset's item table"):
            GenerativeRecommender.from_pretrained(broken, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "suffix"), [("causal", "json"), ("t5_every", "json"), ("lora_llama", "safetensors"),
                                              ("lora_t5", "json")])
def test_evaluate_genrec_reproduces_the_run_metrics_with_per_user_values(recipe_runs, tmp_path, name, suffix, monkeypatch):
    from safetensors.torch import load_file

    from genrec.recipes import evaluate_genrec

    run = recipe_runs[name]
    test_metrics = json.loads((run / "metrics.json").read_text())["test"]
    per_user_path = tmp_path / f"per_user.{suffix}"
    result = evaluate_genrec.main(["--run", str(run), "--split", "test", "--per-user", str(per_user_path), "--out", str(tmp_path / "eval.json")])
    assert result["metrics"] == test_metrics and result["num_users"] == 48 and result["model_type"] == name.split("_")[0]
    assert json.loads((tmp_path / "eval.json").read_text())["metrics"] == test_metrics
    assert result["top1"] == json.loads((run / "metrics.json").read_text())["test_top1"]  # the same ranking, the same diagnostics
    per_user = load_file(per_user_path) if suffix == "safetensors" else json.loads(per_user_path.read_text())
    assert list(map(int, per_user["user_index"])) == list(range(48))
    for metric, value in test_metrics.items():
        values = torch.as_tensor(per_user[metric], dtype=torch.float32)
        assert values.shape == (48,) and values.mean().item() == value  # the per-user values average to the metric exactly
    if suffix == "json":
        split = leave_one_out_split(load_dataset(recipe_runs["data"]))
        assert per_user["user_id"] == split.user_ids and per_user["split"] == "test" and sorted(per_user["metric_names"]) == sorted(test_metrics)
    if name == "causal":  # a run from before run.json and token_space.json: its vocab.json gives the same layout and metrics
        import shutil

        old = Path(shutil.copytree(run, tmp_path / "old_run", ignore=shutil.ignore_patterns("checkpoints")))
        space = open_run(old).token_space
        (old / "run.json").unlink()
        (old / "vocab.json").write_text(json.dumps({"codebook_sizes": list(space.codebook_sizes), "num_user_tokens": space.num_user_tokens}))
        assert evaluate_genrec.main(["--run", str(old), "--out", str(tmp_path / "old.json")])["metrics"] == test_metrics
    if suffix == "json":  # cold-start decoding of the test split: the recommender's ranking; epsilon 0 = plain
        # Every tiny item has training interactions: declare six of them untrained (cold) for both paths.
        from genrec.data.split import SplitData

        monkeypatch.setattr(SplitData, "untrained_items", lambda self: np.arange(len(self.item_ids)) % 5 == 0)
        plain = evaluate_genrec.main(["--run", str(run), "--cold-start", "prefix", "--cold-epsilon", "0", "--out", str(tmp_path / "c0.json")])
        assert plain["metrics"] == test_metrics
        cold = evaluate_genrec.main(["--run", str(run), "--cold-start", "prefix", "--cold-epsilon", "0.5", "--out", str(tmp_path / "c.json"),
                                     "--per-user", str(tmp_path / "c_users.json")])
        assert cold["cold_start"]["method"] == "prefix" and cold["cold_start"]["epsilon"] == 0.5
        rec = GenerativeRecommender.from_pretrained(run, device="cpu")
        split = leave_one_out_split(load_dataset(recipe_runs["data"]))
        histories, user_ids, users = _test_requests(split)
        out = rec.recommend(histories, k=10, user_ids=user_ids, cold_start={"method": "prefix", "epsilon": 0.5})
        hits = [float(split.item_ids[split.test.target[m]] in r.item_ids) for m, r in enumerate(out)]
        per_user = json.loads((tmp_path / "c_users.json").read_text())
        recall = dict(zip(per_user["user_index"], per_user["recall@10"], strict=True))
        assert hits == [recall[u] for u in users]  # evaluation and recommend() add the same cold items
        cold_ids = set(rec.cold_item_ids)
        plain_out = rec.recommend(histories, k=10, user_ids=user_ids)
        assert len(cold_ids) == 6 and sum(len(cold_ids & set(r.item_ids)) for r in out) > sum(
            len(cold_ids & set(r.item_ids)) for r in plain_out)


def test_saving_refuses_weights_that_would_reload_differently(setup, tmp_path):
    """Weights that transformers drops from the file and re-ties on load, while they differ in memory, are refused.

    As after merging a LoRA T5 whose ``shared`` embedding was trained as a separate copy: the encoder, decoder
    and output layer keep the old matrix, saved once (as ``lm_head``), and would load tied to the new ``shared``.
    """
    import copy

    model = copy.deepcopy(setup["rec"].model)
    model.shared = torch.nn.Embedding.from_pretrained(model.shared.weight.detach() + 1.0, freeze=False)
    model.config.tie_word_embeddings = False
    rec = GenerativeRecommender(model, setup["tokenizer"], setup["vocab"], max_history=5, device="cpu")
    with pytest.raises(ValueError, match=r"cannot save T5ForConditionalGeneration faithfully: \['encoder.embed_tokens.weight"):
        rec.save_pretrained(tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_import_genrec_is_cheap_and_exports_the_recommender_lazily():
    code = "import sys, genrec; assert 'torch' not in sys.modules and 'genrec.pipeline' not in sys.modules, sorted(sys.modules)[:50]"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    import genrec
    import genrec.pipeline

    assert genrec.GenerativeRecommender is genrec.pipeline.GenerativeRecommender and "GenerativeRecommender" in dir(genrec)
    from genrec import GenerativeRecommender as imported

    assert imported is GenerativeRecommender
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        genrec.nope  # noqa: B018


# ---------------------------------------------------------------------------------------------- Hub


CLIENT_SCRIPT = r"""
import json, sys
from huggingface_hub import HfApi
from genrec.pipeline import GenerativeRecommender

local, out = sys.argv[1:3]
histories = json.load(open(out + "/histories.json"))
rec = GenerativeRecommender.from_pretrained(local, device="cpu")
commit = rec.push_to_hub("genrec-test/tiny-tiger")
loaded = GenerativeRecommender.from_pretrained("genrec-test/tiny-tiger", device="cpu")
cached = GenerativeRecommender.from_pretrained("genrec-test/tiny-tiger", local_files_only=True, device="cpu")
result = {"commit": commit.oid, "config": loaded.config,
          "recs": [r.to_dict() for r in loaded.recommend(histories, k=10)],
          "cached": [r.to_dict() for r in cached.recommend(histories, k=10)]}
HfApi().upload_file(path_or_fileobj=b"\x80\x04K\x01.", path_in_repo="model/extra.pkl", repo_id="genrec-test/tiny-tiger")
try:
    GenerativeRecommender.from_pretrained("genrec-test/tiny-tiger")
except ValueError as e:
    result["pickle_error"] = str(e)
json.dump(result, open(out + "/result.json", "w"))
"""


@pytest.mark.slow
def test_push_to_hub_and_load_back_with_the_real_client(setup, saved_bundle, tmp_path):
    rec, split = setup["rec"], setup["split"]
    histories = histories_of(split, split.test)[:8]
    (tmp_path / "histories.json").write_text(json.dumps(histories))
    (tmp_path / "client.py").write_text(CLIENT_SCRIPT)
    with HubServer(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN="hf_dummy_test_token", HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="0",
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1",
                   OMP_NUM_THREADS="1")
        run = subprocess.run([sys.executable, str(tmp_path / "client.py"), str(saved_bundle), str(tmp_path)],
                             env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr[-4000:]
        stored = hub.files("genrec-test/tiny-tiger", revision=json.loads((tmp_path / "result.json").read_text())["commit"])
    result = json.loads((tmp_path / "result.json").read_text())
    local = {str(p.relative_to(saved_bundle)) for p in saved_bundle.rglob("*") if p.is_file()}
    assert set(stored) == {".gitattributes", *local}
    for name in local - {"README.md"}:  # the pushed card names the repo; everything else is byte-identical
        assert stored[name] == (saved_bundle / name).read_bytes(), name
    assert "model_name: genrec-test/tiny-tiger" in stored["README.md"].decode()
    expected = [r.to_dict() for r in rec.recommend(histories, k=10)]
    for got in (result["recs"], result["cached"]):
        assert [r["item_ids"] for r in got] == [r["item_ids"] for r in expected]
        np.testing.assert_allclose([r["scores"] for r in got], [r["scores"] for r in expected], rtol=1e-5, atol=1e-5)
    assert "pickle-based file(s) ['model/extra.pkl']" in result["pickle_error"]


HOSTILE_CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def _plant_code(folder: Path, marker: Path, config_name: str = "config.json") -> None:
    """What a malicious uploader would ship: a module that writes ``marker`` when imported, named by an auto_map."""
    (folder / "evil_model.py").write_text(HOSTILE_CODE.format(marker=str(marker)))
    config_path = folder / config_name
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoConfig": "evil_model.EvilConfig", "AutoModelForCausalLM": "evil_model.EvilModel",
                          "AutoModelForSeq2SeqLM": "evil_model.EvilModel", "AutoTokenizer": ["evil_model.EvilTokenizer", None]}
    config_path.write_text(json.dumps(config))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["t5_bundle", "causal_run_best", "lora_run_text_tokenizer", "t5_bundle_auto_map_only"])
def test_loading_never_runs_code_shipped_with_a_model(saved_bundle, recipe_runs, tmp_path, where, monkeypatch):
    """Bundles, run folders and text tokenizers with a .py file or an auto_map are refused, naming the file; nothing runs."""
    import shutil

    monkeypatch.setattr("builtins.input", lambda *a, **k: "y")  # a user who would answer yes to transformers' prompt
    marker = tmp_path / "marker"
    if where.startswith("t5_bundle"):
        folder = Path(shutil.copytree(saved_bundle, tmp_path / "bundle"))
        _plant_code(folder / "model", marker)
        if where.endswith("auto_map_only"):
            (folder / "model" / "evil_model.py").unlink()
        expected = "auto_map" if where.endswith("auto_map_only") else "evil_model.py"
    else:
        name, sub, config = (("causal", "best", "config.json") if where == "causal_run_best"
                             else ("lora_llama", "text_tokenizer", "tokenizer_config.json"))
        folder = Path(shutil.copytree(recipe_runs[name], tmp_path / name, ignore=shutil.ignore_patterns("checkpoints")))
        _plant_code(folder / sub, marker, config)
        expected = "evil_model.py"
    with pytest.raises(ValueError, match=expected) as caught:
        GenerativeRecommender.from_pretrained(folder, device="cpu")
    assert str(folder) in str(caught.value) and not marker.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_a_clear_error(saved_bundle):
    with pytest.raises(ValueError, match="no CUDA device"):
        GenerativeRecommender.from_pretrained(saved_bundle, device="cuda")
    with pytest.raises(ValueError, match="not a device name"):
        GenerativeRecommender.from_pretrained(saved_bundle, device="gpu0")
