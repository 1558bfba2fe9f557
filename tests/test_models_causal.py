"""The decoder-only recommender: built from a config, trained by the same recipe, decoding only catalogue items."""

from __future__ import annotations

import json

import pytest
import torch

from genrec.config import ConfigError, load_config
from genrec.data import (
    CausalCollator,
    Seq2SeqCollator,
    build_causal_dataset,
    build_seq2seq_dataset,
    leave_one_out_split,
    load_dataset,
)
from genrec.decoding import PrefixTrie, score_all_items
from genrec.eval.evaluate import evaluate_generative, left_align
from genrec.models import CausalRecConfig, TokenSpace, build_causal, load_model
from genrec.runs import open_run
from genrec.tokenizer import SIDTable
from genrec.vocab import SIDVocab
from tests._genrec_tiny import ROOT, TINY_CAUSAL, make_dataset, recipe_args

pytestmark = pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_build_causal_from_config(arch):
    vocab = SIDVocab((256, 256, 256, 12), num_user_tokens=2000)
    model = build_causal(vocab, CausalRecConfig(arch=arch))
    assert model.config.vocab_size == vocab.size and not model.config.is_encoder_decoder
    assert model.config.pad_token_id == 0 and model.config.eos_token_id == 1
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied by default
    assert 4.5e6 < sum(p.numel() for p in model.parameters()) < 5.5e6  # about TIGER's T5 (4.6M)
    with pytest.raises(ValueError, match="arch"):
        build_causal(vocab, CausalRecConfig(arch="gpt7"))


def test_left_align():
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12], [0, 0, 3, 4, 0]])
    mask = (ids != 0).long()
    out_ids, out_mask = left_align(ids, mask)
    assert out_ids.tolist() == [[0, 0, 5, 6, 7], [8, 9, 10, 11, 12], [0, 0, 0, 3, 4]]
    assert out_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    assert torch.equal(left_align(out_ids, out_mask)[0], out_ids)  # left-padded input is unchanged


@pytest.mark.slow
@pytest.mark.parametrize("train_targets", ["last", "every_item"])
def test_causal_recipe_trains_decodes_valid_items_and_reloads(tmp_path, train_targets):
    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    out = tmp_path / "run"
    metrics = train_genrec.main(["--config", str(ROOT / "recipes/configs/genrec_beauty_causal.yaml"),
                                 *recipe_args(data, tok, out, *TINY_CAUSAL, "training.epochs=4",
                                              f"model.causal.train_targets={train_targets}")])
    assert metrics["model_type"] == "causal" and metrics["timings"]["test_users"] == 48
    history = json.loads((out / "train_history.json").read_text())["epochs"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    model = load_model(out / "best")  # AutoModelForCausalLM by the saved config
    assert type(model).__name__ == "LlamaForCausalLM"
    space = open_run(out).token_space
    assert space == TokenSpace.from_vocab(SIDVocab(space.codebook_sizes, num_user_tokens=space.num_user_tokens))
    table = SIDTable.load(tok)
    tokens = space.codes_to_tokens(table.sids)
    trie = PrefixTrie.from_item_tokens(tokens, level_ranges=space.level_ranges)
    split = leave_one_out_split(load_dataset(data))
    test_ds = build_seq2seq_dataset(split.test, tokens, add_user_token=space.user_token_fn)
    res = evaluate_generative(model, test_ds, trie, Seq2SeqCollator(), num_beams=10, batch_size=16, show_progress=False)
    assert res.metrics == metrics["test"]  # exact: same weights, same batches
    # Only catalogue items, each at most once per user, every user ranked.
    assert ((res.ranked_items >= 0) & (res.ranked_items < len(table))).all()
    assert all(len(set(row)) == len(row) for row in res.ranked_items.tolist())
    # Full-width beams rank exactly like scoring every catalogue item (16 nodes at depth 2 <= 32 beams).
    batch = CausalCollator(padding_side="left")([test_ds[i] for i in range(8)])
    exact = evaluate_generative(model, test_ds.select(range(8)), trie, Seq2SeqCollator(), num_beams=32, ks=(10,),
                                show_progress=False)
    scores = score_all_items(model, batch["input_ids"], batch["attention_mask"], tokens)
    order = torch.argsort(-scores, dim=1, stable=True)[:, :10]
    assert torch.equal(exact.ranked_items[torch.argsort(exact.user_index)], order[torch.argsort(batch["user_index"])])


def test_training_rows_of_the_causal_model(tmp_path):
    """Prompt + target for training, the prompt alone (the seq2seq rows) for decoding."""
    data, tok = make_dataset(tmp_path)
    split = leave_one_out_split(load_dataset(data))
    vocab = SIDVocab((4, 4, 2), num_user_tokens=8)
    tokens = vocab.codes_to_tokens(SIDTable.load(tok).sids)
    train_ds = build_causal_dataset(split.test, tokens, add_user_token=vocab.user_token)
    prompts = build_seq2seq_dataset(split.test, tokens, add_user_token=vocab.user_token)
    row, prompt = train_ds[0], prompts[0]
    assert row["input_ids"][: row["prompt_length"]] == prompt["input_ids"]
    assert row["input_ids"][row["prompt_length"]:] == prompt["labels"] == tokens[split.test.target[0]].tolist()
    assert row["labels"][: row["prompt_length"]] == [-100] * row["prompt_length"]


def test_model_type_selector_keeps_old_configs_valid():
    from genrec.recipes import train_genrec

    cfg = load_config(train_genrec.GenRecConfig, ROOT / "recipes/configs/genrec_beauty.yaml")
    assert cfg.model.type == "t5" and cfg.model.t5().d_model == 128 and cfg.model.t5().num_heads == 6
    cfg = load_config(train_genrec.GenRecConfig, ROOT / "recipes/configs/genrec_beauty_causal.yaml", ["model.causal.arch=qwen2"])
    assert cfg.model.type == "causal" and cfg.model.causal.arch == "qwen2" and cfg.model.causal.hidden_size == 256
    with pytest.raises(ConfigError, match="hidden_sise"):
        load_config(train_genrec.GenRecConfig, None, ["model.causal.hidden_sise=3"])
    with pytest.raises(ValueError, match=r"model.causal.train_targets must be one of \('last', 'every_item'\), got 'all'"):
        cfg = load_config(train_genrec.GenRecConfig, None, ["model.type=causal", "model.causal.train_targets=all"])
        train_genrec.build_inputs(cfg, None, None, SIDTable(["a"], torch.zeros(1, 1, dtype=torch.long)), with_model=False)
    with pytest.raises(ValueError, match="model.type"):
        cfg = load_config(train_genrec.GenRecConfig, None, ["model.type=rnn"])
        train_genrec.build_inputs(cfg, None, None, SIDTable(["a"], torch.zeros(1, 1, dtype=torch.long)))
