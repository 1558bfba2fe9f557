"""Constrained beam search on tiny random models: exhaustive equality, generate() equality, edge cases."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from genrec.decoding import (
    PrefixTrie,
    TrieLogitsProcessor,
    constrained_beam_search,
    constrained_beam_search_causal,
    make_prefix_allowed_tokens_fn,
    score_all_items,
)
from genrec.models import T5RecConfig, build_t5
from genrec.vocab import EOS_ID, SIDVocab
from tests.helpers import DECODING_T5, exhaustive_top_k, make_catalogue, make_histories


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models: one intra-op thread. With 2 threads on a busy 2-core machine every op waits on the
    other thread's barrier (measured 1.2 s vs 5 ms per search); restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generate_items(model, trie, vocab, ids, mask, num_beams, prompt_length=1, **constraint):
    """model.generate beam search -> (items (B, beams), scores * D)."""
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=num_beams, num_return_sequences=num_beams,
                         max_new_tokens=vocab.depth, do_sample=False, output_scores=True, return_dict_in_generate=True,
                         **constraint)
    sids = out.sequences[:, prompt_length:].reshape(len(ids), num_beams, vocab.depth)
    nodes = trie.walk((sids - torch.tensor(vocab.level_offsets)).reshape(-1, vocab.depth))
    return trie.leaf_items(nodes).view(len(ids), num_beams), out.sequences_scores.view(len(ids), num_beams) * vocab.depth


@pytest.fixture(scope="module", params=[(4, 5, 3), (5, 4, 3, 2)], ids=["D3", "D4"])
def t5_setup(request):
    torch.manual_seed(0)
    vocab = SIDVocab(request.param)
    model = build_t5(vocab, DECODING_T5).eval()
    item_tokens = make_catalogue(vocab, 60 if vocab.depth == 3 else 120, seed=1)
    ids, mask = make_histories(item_tokens, batch=6, seed=2)
    brute = score_all_items(model, ids, mask, item_tokens)
    return vocab, model, item_tokens, ids, mask, brute


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_full_width_beams_equal_exhaustive_ranking(t5_setup, layout):
    vocab, model, item_tokens, ids, mask, brute = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab, layout=layout)
    full = max(trie.num_nodes)  # >= the number of trie nodes at every level: nothing is ever pruned
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=full, top_k=15)
    ref_items, ref_scores = exhaustive_top_k(brute, 15)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("num_beams", [3, 8])
def test_final_ranking_shortcut_equals_ranking_every_leaf(t5_setup, num_beams):
    # Without exclusions the last level ranks only the best top_k + 1 candidates; an empty exclusion
    # list takes the path that looks up and ranks every leaf. Both must give the same lists.
    vocab, model, item_tokens, ids, mask, _ = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    fast = constrained_beam_search(model, ids, mask, trie, num_beams=num_beams)
    full = constrained_beam_search(model, ids, mask, trie, num_beams=num_beams, exclude_items=[[] for _ in range(len(ids))])
    assert torch.equal(fast[0], full[0]) and torch.equal(fast[1], full[1])


def test_level_normalization_equals_its_exhaustive_ranking(t5_setup):
    vocab, model, item_tokens, ids, mask, _ = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    brute = score_all_items(model, ids, mask, item_tokens, vocab=vocab, normalization="level")
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=max(trie.num_nodes), top_k=10,
                                            normalization="level")
    ref_items, ref_scores = exhaustive_top_k(brute, 10)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("num_beams", [2, 3])
def test_narrow_beams_equal_generate(t5_setup, num_beams):
    vocab, model, item_tokens, ids, mask, _ = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    assert trie.num_nodes[1] >= num_beams  # no beam ever runs out of continuations, as generate assumes
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=num_beams)
    for constraint in (
        {"prefix_allowed_tokens_fn": make_prefix_allowed_tokens_fn(trie)},
        {"logits_processor": [TrieLogitsProcessor(trie)]},
    ):
        gen_items, gen_scores = generate_items(model, trie, vocab, ids, mask, num_beams, **constraint)
        assert torch.equal(items, gen_items)
        torch.testing.assert_close(scores, gen_scores, atol=1e-4, rtol=1e-5)
    # Narrow beams only prune: every returned item exists and its score is its exhaustive score.
    assert ((items >= 0) & (items < len(item_tokens))).all()
    torch.testing.assert_close(scores, t5_setup[5].gather(1, items), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("beams", ["narrow", "full"])  # full: more beams than the first level's codes, so they grow after step 1
def test_shared_and_per_beam_cross_attention_agree_and_model_is_restored(t5_setup, beams):
    vocab, model, item_tokens, ids, mask, _ = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    num_beams = 4 if beams == "narrow" else max(trie.num_nodes)
    model.train()
    implementation = model.config._attn_implementation
    shared = constrained_beam_search(model, ids, mask, trie, num_beams=num_beams)
    per_beam = constrained_beam_search(model, ids, mask, trie, num_beams=num_beams, share_cross_attention=False)
    assert model.training and model.config._attn_implementation == implementation
    model.eval()
    assert torch.equal(shared[0], per_beam[0])
    torch.testing.assert_close(shared[1], per_beam[1], atol=1e-5, rtol=1e-5)


def test_history_exclusion(t5_setup):
    vocab, model, item_tokens, ids, mask, brute = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    gen = torch.Generator().manual_seed(5)
    # Exclude some of each user's exhaustive top items (the ones that matter) plus random ones.
    top = exhaustive_top_k(brute, 6)[0]
    exclude = [set(top[u, ::2].tolist()) | set(torch.randint(0, len(item_tokens), (3,), generator=gen).tolist())
               for u in range(len(ids))]
    full = max(trie.num_nodes)
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=full, top_k=10, exclude_items=exclude)
    ref_items, ref_scores = exhaustive_top_k(brute, 10, exclude)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-5)
    # Same sets as a (B, E) tensor padded with -1.
    width = max(len(s) for s in exclude)
    padded = torch.tensor([sorted(s) + [-1] * (width - len(s)) for s in exclude])
    assert torch.equal(constrained_beam_search(model, ids, mask, trie, num_beams=full, top_k=10, exclude_items=padded)[0],
                       items)
    # Narrow beams: excluded items are never returned.
    narrow = constrained_beam_search(model, ids, mask, trie, num_beams=4, exclude_items=exclude)[0]
    assert all(not (set(row) - {-1}) & exclude[u] for u, row in enumerate(narrow.tolist()))
    with pytest.raises(ValueError, match="user 0 lists item"):
        constrained_beam_search(model, ids, mask, trie, num_beams=4, exclude_items=[[len(item_tokens)]] + [[]] * 5)


def test_beams_wider_than_the_catalogue_and_a_one_item_catalogue():
    torch.manual_seed(0)
    vocab = SIDVocab((3, 3, 2))
    model = build_t5(vocab, DECODING_T5).eval()
    item_tokens = make_catalogue(vocab, 8, seed=3)
    ids, mask = make_histories(item_tokens, batch=3, seed=4)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    n = len(item_tokens)
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=n + 5, top_k=n + 3)
    ref_items, ref_scores = exhaustive_top_k(score_all_items(model, ids, mask, item_tokens), n + 3)
    assert torch.equal(items, ref_items) and (items[:, n:] == -1).all()
    assert torch.isneginf(scores[:, n:]).all()
    torch.testing.assert_close(scores[:, :n], ref_scores[:, :n], atol=1e-4, rtol=1e-5)

    one = PrefixTrie.from_item_tokens(item_tokens[:1], vocab)
    items, scores = constrained_beam_search(model, ids, mask, one, num_beams=4, top_k=3)
    assert items.tolist() == [[0, -1, -1]] * 3
    torch.testing.assert_close(scores[:, 0], score_all_items(model, ids, mask, item_tokens[:1])[:, 0], atol=1e-4, rtol=1e-5)
    # Excluding the only item leaves nothing.
    items, scores = constrained_beam_search(model, ids, mask, one, num_beams=4, top_k=2, exclude_items=[[0]] * 3)
    assert (items == -1).all() and torch.isneginf(scores).all()


def test_ties_are_broken_by_item_index():
    vocab = SIDVocab((3, 4, 2))
    model = build_t5(vocab, DECODING_T5).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform next-token distribution: every item has the same score
    item_tokens = make_catalogue(vocab, 20, seed=6)
    ids, mask = make_histories(item_tokens, batch=2, seed=7)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=max(trie.num_nodes), top_k=8)
    assert items.tolist() == [list(range(8))] * 2
    assert torch.allclose(scores, scores[0, 0].expand_as(scores))


def test_autocast_bf16_returns_catalogue_items(t5_setup):
    vocab, model, item_tokens, ids, mask, _ = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=4, autocast_dtype=torch.bfloat16)
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert ((items >= 0) & (items < len(item_tokens))).all()
    assert all(len(set(row)) == len(row) for row in items.tolist())


def test_input_errors(t5_setup):
    vocab, model, item_tokens, ids, mask, _ = t5_setup
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    with pytest.raises(ValueError, match="top_k"):
        constrained_beam_search(model, ids, mask, trie, num_beams=3, top_k=4)
    with pytest.raises(ValueError, match="attention_mask shape"):
        constrained_beam_search(model, ids, mask[:, :-1], trie, num_beams=3)
    codes_only = PrefixTrie.from_codes(vocab.tokens_to_codes(item_tokens), vocab.codebook_sizes)
    with pytest.raises(ValueError, match="vocab="):
        constrained_beam_search(model, ids, mask, codes_only, num_beams=3)
    a = constrained_beam_search(model, ids, mask, codes_only, num_beams=3, vocab=vocab)
    b = constrained_beam_search(model, ids, mask, trie, num_beams=3)
    assert torch.equal(a[0], b[0])


def test_trie_logits_processor_masks_exactly_the_allowed_tokens():
    vocab = SIDVocab((4, 5, 3))
    item_tokens = make_catalogue(vocab, 30, seed=8)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    processor = TrieLogitsProcessor(trie, prompt_length=2)
    allowed_fn = make_prefix_allowed_tokens_fn(trie, prompt_length=2)
    prompt = torch.tensor([[7, 1]] * 4)
    prefixes = torch.cat([item_tokens[:3, :2], torch.tensor([[vocab.level_offsets[0] + 3, vocab.level_offsets[1]]])])
    scores = torch.randn(4, vocab.size)
    out = processor(torch.cat([prompt, prefixes], dim=1), scores)
    for row in range(4):
        expected = {t[2] for t in item_tokens.tolist() if t[:2] == prefixes[row].tolist()}
        kept = set(torch.isfinite(out[row]).nonzero().squeeze(1).tolist())
        assert kept == expected
        assert torch.equal(out[row, sorted(kept)], scores[row, sorted(kept)])
        assert set(allowed_fn(0, torch.cat([prompt[row], prefixes[row]]))) == (expected or {EOS_ID})
    complete = processor(torch.cat([prompt, item_tokens[:4]], dim=1), scores)
    assert (torch.isfinite(complete).sum(1) == 1).all() and torch.isfinite(complete[:, EOS_ID]).all()


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_decoder_only_model(architecture):
    torch.manual_seed(0)
    vocab = SIDVocab((4, 5, 3))
    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[architecture]
    config = config_cls(vocab_size=vocab.size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        pad_token_id=0, bos_token_id=EOS_ID, eos_token_id=EOS_ID)
    model = model_cls(config).eval()
    item_tokens = make_catalogue(vocab, 60, seed=9)
    ids, mask = make_histories(item_tokens, batch=5, seed=10, left_pad=True)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    brute = score_all_items(model, ids, mask, item_tokens)
    items, scores = constrained_beam_search_causal(model, ids, mask, trie, num_beams=max(trie.num_nodes), top_k=12)
    ref_items, ref_scores = exhaustive_top_k(brute, 12)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-5)

    items, scores = constrained_beam_search_causal(model, ids, mask, trie, num_beams=3)
    gen_items, gen_scores = generate_items(model, trie, vocab, ids, mask, 3, prompt_length=ids.shape[1],
                                           logits_processor=[TrieLogitsProcessor(trie, prompt_length=ids.shape[1])])
    assert torch.equal(items, gen_items)
    torch.testing.assert_close(scores, gen_scores, atol=1e-4, rtol=1e-5)
    assert ((items >= 0) & (items < len(item_tokens))).all()

    with pytest.raises(ValueError, match="left-padded"):
        right_ids, right_mask = make_histories(item_tokens, batch=5, seed=10)
        constrained_beam_search_causal(model, right_ids, right_mask, trie, num_beams=3)
    with pytest.raises(ValueError, match="encoder-decoder"):
        constrained_beam_search(model, ids, mask, trie, num_beams=3)


def test_decoding_raises_no_deprecation_warning_from_our_calls():
    """genrec's calls into transformers use the current API: a FutureWarning / DeprecationWarning here means a
    call that breaks when transformers removes the old form (e.g. ``past_key_values`` -> ``cache`` in 5.40)."""
    import warnings

    torch.manual_seed(0)
    vocab = SIDVocab((4, 5, 3))
    item_tokens = make_catalogue(vocab, 60, seed=9)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=vocab.size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         pad_token_id=0, bos_token_id=EOS_ID, eos_token_id=EOS_ID)).eval()
    seq2seq = [build_t5(vocab, DECODING_T5).eval(), build_t5(vocab, T5RecConfig(**{**DECODING_T5.__dict__, "encoder": "causal"})).eval()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for model in seq2seq:
            ids, mask = make_histories(item_tokens, batch=3, seed=2)
            constrained_beam_search(model, ids, mask, trie, num_beams=4)
        ids, mask = make_histories(item_tokens, batch=3, seed=10, left_pad=True)
        constrained_beam_search_causal(llama, ids, mask, trie, num_beams=4)
    deprecations = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not deprecations, deprecations
