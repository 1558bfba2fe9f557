"""Exact top-K search: equal to scoring every catalogue item, for encoder-decoder and decoder-only models."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genrec.decoding import (
    PrefixTrie,
    constrained_beam_search,
    constrained_beam_search_causal,
    exact_top_k,
    score_all_items,
)
from genrec.models import build_t5
from genrec.vocab import EOS_ID, SIDVocab
from tests.helpers import DECODING_T5, exhaustive_top_k, make_catalogue, make_histories

pytestmark = pytest.mark.usefixtures("single_thread")


def _models(vocab: SIDVocab):
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=vocab.size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         pad_token_id=0, bos_token_id=EOS_ID, eos_token_id=EOS_ID)).eval()
    return {"t5": build_t5(vocab, DECODING_T5).eval(), "causal": llama}


@pytest.mark.parametrize("kind", ["t5", "causal"])
def test_exact_search_equals_scoring_every_item(kind):
    vocab = SIDVocab((6, 6, 5))
    model = _models(vocab)[kind]
    item_tokens = make_catalogue(vocab, 150, seed=3)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    ids, mask = make_histories(item_tokens, batch=12, seed=4, left_pad=kind == "causal")
    top_k = 10
    ref_items, ref_scores = exhaustive_top_k(score_all_items(model, ids, mask, item_tokens), top_k)
    result = exact_top_k(model, ids, mask, trie, top_k, start_width=top_k, max_width=256)
    assert result.certified.all()
    assert torch.equal(result.items, ref_items)
    torch.testing.assert_close(result.scores, ref_scores, atol=1e-4, rtol=1e-5)
    assert (result.expanded > 0).all() and (result.width >= top_k).all()
    # The test has teeth: beam search at the first width misses the exact list for some user.
    search = constrained_beam_search if kind == "t5" else constrained_beam_search_causal
    narrow, _ = search(model, ids, mask, trie, num_beams=top_k, top_k=top_k)
    assert not torch.equal(narrow, ref_items)


def test_exclusions_and_the_node_budget():
    vocab = SIDVocab((6, 6, 5))
    model = _models(vocab)["t5"]
    item_tokens = make_catalogue(vocab, 150, seed=3)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    ids, mask = make_histories(item_tokens, batch=12, seed=4)
    scores = score_all_items(model, ids, mask, item_tokens)
    exclude = [[int(i) for i in scores[u].topk(3).indices] for u in range(12)]  # each user's 3 best items
    ref_items, _ = exhaustive_top_k(scores, 5, exclude=[set(e) for e in exclude])
    result = exact_top_k(model, ids, mask, trie, 5, start_width=5, max_width=256, exclude_items=exclude)
    assert result.certified.all() and torch.equal(result.items, ref_items)
    # A budget too small to certify: the widest search's list, flagged.
    capped = exact_top_k(model, ids, mask, trie, 5, start_width=5, max_width=5)  # no second pass
    beam, _ = constrained_beam_search(model, ids, mask, trie, num_beams=5, top_k=5)
    assert not capped.certified.all() and torch.equal(capped.items, beam) and (capped.width == 5).all()
    with pytest.raises(ValueError, match="max_width"):
        exact_top_k(model, ids, mask, trie, 10, max_width=4)


@pytest.mark.slow
def test_exact_search_through_evaluation(tmp_path):
    """eval.search=exact returns the exhaustive top-k of a trained tiny run."""

    from accelerate.state import AcceleratorState

    from genrec.recipes import evaluate_genrec, train_genrec
    from tests._genrec_tiny import TINY_T5 as TINY_T5_ARGS
    from tests._genrec_tiny import make_dataset, recipe_args

    AcceleratorState._reset_state(reset_partial_state=True)
    data, tok = make_dataset(tmp_path)
    out = tmp_path / "run"
    train_genrec.main(recipe_args(data, tok, out, *TINY_T5_ARGS, "training.epochs=2", "training.mixed_precision=no",
                                  "eval.num_beams=10", "eval.search=exact"))
    AcceleratorState._reset_state(reset_partial_state=True)
    loaded = evaluate_genrec.load_run(out, device="cpu")
    exact = evaluate_genrec.evaluate_run(loaded, "test", show_progress=False)
    assert exact.search_stats["certified_share"] == 1.0 and exact.search_stats["expanded_per_user"] > 0
    # Exhaustive reference: every catalogue item scored for every test user.
    ds = loaded.dataset("test")
    batch = loaded.inputs.eval_collator([ds[i] for i in range(len(ds))])
    tokens = loaded.space.codes_to_tokens(loaded.sid_table.sids)
    ref, _ = exhaustive_top_k(score_all_items(loaded.model, batch["input_ids"], batch["attention_mask"], tokens), 10)
    by_user = dict(zip(batch["user_index"].tolist(), ref.tolist(), strict=True))
    assert {u: r for u, r in zip(exact.user_index.tolist(), exact.ranked_items.tolist(), strict=True)} == by_user

