"""Pretrained LM + LoRA: SID tokens in the text tokenizer, trained new embedding rows, mixed text + SID inputs.

The "pretrained" checkpoints are tiny models saved here with their tokenizers (a word-level fast
tokenizer for Llama/Qwen2, a SentencePiece T5 tokenizer for T5): no Hub.
"""

from __future__ import annotations

import json

import pytest
import torch

from genrec.config import from_dict
from genrec.data import (
    CausalCollator,
    Seq2SeqCollator,
    build_causal_dataset,
    build_seq2seq_dataset,
    item_texts,
    leave_one_out_split,
    load_dataset,
)
from genrec.models import LoRARecConfig, build_lora, load_lora_model, load_model
from genrec.models.lora import new_token_ids
from genrec.runs import open_run
from genrec.tokenizer import SIDTable
from genrec.training import TrainingConfig, train
from tests._genrec_tiny import ROOT, make_dataset, recipe_args, tiny_pretrained

pytestmark = pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    data, tok = make_dataset(root)
    return root, data, tok


def _effective_rows(model, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The input-embedding rows and output-layer rows of ``ids`` as the (peft-wrapped) model uses them.

    Encoder-decoder models are read through their encoder and decoder stacks (both must agree): the
    embedding T5 exposes as ``shared`` is not necessarily what its stacks read.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.no_grad():
        inputs = model.get_input_embeddings()(torch.tensor(ids)).clone()
        if base.config.is_encoder_decoder:
            inputs = base.get_encoder().get_input_embeddings()(torch.tensor(ids)).clone()
            torch.testing.assert_close(base.get_decoder().get_input_embeddings()(torch.tensor(ids)), inputs, rtol=0, atol=0)
        head = model.get_output_embeddings()
        width = inputs.shape[1]
        outputs = head(torch.eye(width, dtype=inputs.dtype)).T[ids].clone()  # (len(ids), width) rows of W
    return inputs, outputs


@pytest.mark.parametrize("kind,new_embeddings", [("llama", "tokens"), ("qwen2", "tokens"), ("t5", "tokens"), ("t5", "full"), ("llama", "full")])
def test_lora_trains_new_sid_rows_and_nothing_pretrained(tiny, tmp_path, kind, new_embeddings):
    root, data, tok = tiny
    pretrained = tiny_pretrained(root / f"pre_{kind}", kind)
    table = SIDTable.load(tok)
    torch.manual_seed(0)
    full = new_embeddings == "full"
    model, text_tok, space = build_lora(LoRARecConfig(pretrained=str(pretrained), r=4, alpha=8, new_embeddings=new_embeddings),
                                        table.codebook_sizes, num_user_tokens=4)
    # SID tokens: one contiguous id range per level, after the pretrained vocabulary; user tokens after them.
    assert text_tok.convert_ids_to_tokens([space.level_offsets[1] + 3]) == ["<b_3>"]
    assert text_tok.convert_ids_to_tokens([space.user_offset]) == ["<u_0>"]
    assert space.level_offsets[0] >= len(text_tok) - sum(table.codebook_sizes) - 4
    new = new_token_ids(space)
    old = list(range(5))  # pretrained rows (<pad>, </s>, <unk>, words)
    base_tied = model.get_base_model().config.tie_word_embeddings
    new_in, new_out = _effective_rows(model, new)
    old_in, old_out = _effective_rows(model, old)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable)
    assert any(("modules_to_save" if full else "trainable_tokens_delta") in n for n in trainable)

    # Mixed inputs: each history item is its title's tokens, then its SID tokens.
    dataset = load_dataset(data)
    split = leave_one_out_split(dataset)
    titles = text_tok(item_texts(dataset.items, "{title}"), add_special_tokens=False)["input_ids"]
    tokens = space.codes_to_tokens(table.sids)
    seq2seq = model.config.is_encoder_decoder
    build = build_seq2seq_dataset if seq2seq else build_causal_dataset
    ds = build(split.train, tokens, add_user_token=space.user_token_fn, eos_id=space.eos_id, item_text_tokens=titles)
    first = split.train.history(0)
    row = text_tok.convert_ids_to_tokens(ds[0]["input_ids"])
    assert row[0] == "<u_0>" and row[1 : 1 + len(titles[first[0]])] == text_tok.convert_ids_to_tokens(titles[first[0]])
    assert any(t.startswith("<a_") for t in row) and row[ds[0]["prompt_length" if not seq2seq else "length"] - 1] == text_tok.eos_token

    collator = Seq2SeqCollator(space.pad_id) if seq2seq else CausalCollator(space.pad_id)
    cfg = TrainingConfig(epochs=2, batch_size=16, learning_rate=5e-2, warmup_steps=1, checkpoint_at_epoch_end=False)
    result = train(model, ds, collator, cfg, tmp_path / "run")

    trained_in, trained_out = _effective_rows(model, new)
    assert (trained_in - new_in).abs().amax(dim=1).gt(0).float().mean() > 0.5  # the SID rows moved...
    assert (trained_out - new_out).abs().amax(dim=1).gt(0).float().mean() > 0.5  # ... in the output layer too
    after_in, after_out = _effective_rows(model, old)
    if full:  # the whole matrices train, and tied checkpoints stay tied
        assert not torch.equal(after_in, old_in)
        if base_tied:
            torch.testing.assert_close(trained_out, trained_in, rtol=0, atol=0)
    else:
        assert torch.equal(after_in, old_in) and torch.equal(after_out, old_out)  # pretrained rows did not
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name  # nor did any frozen weight
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # B starts at 0

    # The saved adapter + extended tokenizer rebuild the same model.
    text_tok.save_pretrained(tmp_path / "text_tokenizer")
    reloaded = load_lora_model(result.best_dir, tmp_path / "text_tokenizer")
    assert torch.equal(_effective_rows(reloaded, new)[0], trained_in)
    batch = collator([ds[i] for i in range(4)])
    keys = ("input_ids", "attention_mask", "labels")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**{k: batch[k] for k in keys}).logits, model(**{k: batch[k] for k in keys}).logits)


@pytest.mark.slow
def test_lora_recipe_end_to_end_and_reload(tiny, tmp_path):
    from genrec.recipes import train_genrec

    root, data, tok = tiny
    pretrained = tiny_pretrained(root / "pre_llama_recipe", "llama")
    out = tmp_path / "run"
    metrics = train_genrec.main(["--config", str(ROOT / "recipes/configs/genrec_beauty_lora.yaml"),
                                 *recipe_args(data, tok, out, f"model.lora.pretrained={pretrained}", "training.epochs=2",
                                              "training.mixed_precision=bf16", "model.lora.prompt=the next item is")])
    assert metrics["model_type"] == "lora" and (out / "best" / "adapter_config.json").is_file()
    assert (out / "text_tokenizer").is_dir() and open_run(out).model_type == "lora"
    assert metrics["timings"]["test_users"] == 48
    # Reload: the run's best adapter on its base checkpoint reproduces the test metrics.
    from genrec.decoding import PrefixTrie
    from genrec.eval.evaluate import evaluate_generative

    cfg = from_dict(train_genrec.GenRecConfig, json.loads((out / "config.json").read_text()))
    split = leave_one_out_split(load_dataset(data))
    inputs = train_genrec.build_inputs(cfg, load_dataset(data), split, SIDTable.load(tok), with_model=False)
    assert inputs.model is None  # evaluation rows without loading the pretrained checkpoint
    space = open_run(out).token_space
    assert space == inputs.space
    with_model = train_genrec.build_inputs(cfg, load_dataset(data), split, SIDTable.load(tok))
    assert with_model.model is not None and with_model.space == space
    assert with_model.test_ds.to_list() == inputs.test_ds.to_list()
    model = load_model(out / "best", tokenizer_dir=out / "text_tokenizer")
    trie = PrefixTrie.from_item_tokens(space.codes_to_tokens(SIDTable.load(tok).sids), level_ranges=space.level_ranges)
    res = evaluate_generative(model, inputs.test_ds, trie, inputs.eval_collator, num_beams=10, batch_size=16, show_progress=False)
    assert res.metrics == metrics["test"]  # exact: same weights, same batches
    assert ((res.ranked_items >= 0) & (res.ranked_items < 30)).all()
