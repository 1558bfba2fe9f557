"""Cold-start retrieval: cold items added to the plain search's lists (TIGER's prefix matching, content drafts, fusion)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genrec.decoding import (
    ColdCatalogue,
    ColdStartSettings,
    GenerationSettings,
    PrefixTrie,
    SearchResult,
    score_all_items,
    search,
)
from genrec.decoding.cold_start import (
    RANK_CONSTANT,
    add_cold_items,
    content_candidates,
    fuse_rankings,
    prefix_candidates,
)
from genrec.models import build_t5
from genrec.models.semantic_knn import SemanticKNN
from genrec.vocab import EOS_ID, SIDVocab
from tests.helpers import DECODING_T5, make_catalogue, make_histories

pytestmark = pytest.mark.usefixtures("single_thread")


def _model(kind: str, vocab: SIDVocab):
    torch.manual_seed(0)
    if kind == "t5":
        return build_t5(vocab, DECODING_T5).eval()
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab.size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        pad_token_id=0, bos_token_id=EOS_ID, eos_token_id=EOS_ID)).eval()


def _setup(kind: str, num_cold: int = 25, seed: int = 3):
    vocab = SIDVocab((6, 6, 5))
    model = _model(kind, vocab)
    item_tokens = make_catalogue(vocab, 150, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    cold = torch.zeros(len(item_tokens), dtype=torch.bool)
    cold[torch.randperm(len(item_tokens), generator=gen)[:num_cold]] = True
    embeddings = torch.randn(len(item_tokens), 8, generator=gen)
    catalogue = ColdCatalogue(item_tokens, cold, vocab.level_ranges, item_embeddings=embeddings)
    ids, mask = make_histories(item_tokens, batch=12, seed=4, left_pad=kind == "causal")
    history_items = torch.randint(0, len(item_tokens), (12, 3), generator=gen)
    history_items[::3, 1:] = -1  # some histories of one item
    return vocab, model, item_tokens, PrefixTrie.from_item_tokens(item_tokens, vocab), catalogue, ids, mask, history_items


@pytest.mark.parametrize("kind", ["t5", "causal"])
def test_epsilon_zero_and_method_off_reproduce_plain_decoding(kind):
    vocab, model, _, trie, catalogue, ids, mask, history = _setup(kind)
    plain = search(model, ids, mask, trie, top_k=10)
    for cold in (ColdStartSettings(method="prefix", epsilon=0.0), ColdStartSettings(method="content", epsilon=0.05),
                 ColdStartSettings(method="off", epsilon=0.5), ColdStartSettings(method="fusion", epsilon=0.0, cold_boost=5.0)):
        found = search(model, ids, mask, trie, top_k=10, settings=GenerationSettings(cold_start=cold), cold_catalogue=catalogue,
                       history_items=history)
        assert torch.equal(found.items, plain.items) and torch.equal(found.scores, plain.scores)


@pytest.mark.parametrize("kind", ["t5", "causal"])
def test_prefix_candidates_are_the_cold_items_under_the_best_cold_prefixes(kind):
    vocab, model, item_tokens, _, catalogue, ids, mask, _ = _setup(kind)
    prefix_scores = score_all_items(model, ids, mask, catalogue.prefix_tokens)  # (B, N): every item's semantic-code score
    settings = ColdStartSettings(method="prefix", num_beams=1000)  # wider than the cold prefixes: all of them
    items, scores = prefix_candidates(model, ids, mask, catalogue, settings)
    for user in range(len(ids)):
        got = {int(i): float(s) for i, s in zip(items[user], scores[user], strict=True) if i >= 0}
        assert sorted(got) == catalogue.cold.tolist()  # every cold item, once
        for item, score in got.items():
            assert score == pytest.approx(float(prefix_scores[user, item]), abs=1e-4)


def _reference_merge(items, scores, cand, cand_scores, is_cold, top_k, max_cold, placement="score"):
    """Plain Python: the plain list plus the best allowed cold candidates, by score (plain first, then item index)."""
    out_items, out_scores = [], []
    for row in range(len(items)):
        plain = [(float(s), 0, int(i)) for i, s in zip(items[row][:top_k], scores[row][:top_k], strict=True) if i >= 0]
        taken = {i for _, _, i in plain}
        room = max(0, max_cold - sum(bool(is_cold[i]) for _, _, i in plain))
        pool = sorted({(-float(s), int(i)) for i, s in zip(cand[row], cand_scores[row], strict=True)
                       if i >= 0 and int(i) not in taken and s > float("-inf")})
        seen, extra = set(), []
        for neg, i in pool:
            if i not in seen and len(extra) < room:
                seen.add(i)
                extra.append((-neg, 1, i))
        merged = sorted(plain + extra, key=lambda t: (-t[0], t[1], t[2] if t[1] else 0))[:top_k]
        if placement == "tail":  # the same members: the plain ones first, in their order, then the admitted ones
            merged = [t for t in merged if t[1] == 0] + [t for t in merged if t[1] == 1]
        out_items.append([i for _, _, i in merged] + [-1] * (top_k - len(merged)))
        out_scores.append([s for s, _, _ in merged] + [float("-inf")] * (top_k - len(merged)))
    return torch.tensor(out_items), torch.tensor(out_scores)


def _plain_lists(gen, rows: int, top_k: int, trial: int, cold_item: int, place: int) -> torch.Tensor:
    """Random plain lists of warm items (0-29 of a 40-item catalogue whose items 30-39 are cold); on odd trials
    row 0 holds the cold item ``cold_item`` at ``place`` (the plain search found a cold item itself)."""
    items = torch.stack([torch.randperm(30, generator=gen)[:top_k] for _ in range(rows)])
    if trial % 2:
        items[0, place] = cold_item
    return items


COLD_TAIL = torch.arange(40) >= 30  # the 40-item catalogue of the merge tests: items 30-39 are cold


def test_merge_respects_the_cap_and_orders_by_score():
    gen = torch.Generator().manual_seed(0)
    top_k, is_cold = 10, COLD_TAIL
    for trial in range(20):
        items = _plain_lists(gen, 6, top_k, trial, cold_item=35, place=3)
        scores = torch.sort(-torch.rand(6, top_k, generator=gen) * 10, dim=1, descending=True).values
        scores[1, -2:] = float("-inf")  # a row with fewer reachable items
        items[1, -2:] = -1
        cand = torch.randint(28, 40, (6, 7), generator=gen)  # some warm duplicates of the plain list, some repeats
        cand_scores = -torch.rand(6, 7, generator=gen) * 10
        cand_scores[2] = scores[2, 4]  # ties with a plain item
        max_cold = int(trial % 4)
        placement = "tail" if trial % 3 == 0 else "score"
        merged = add_cold_items(SearchResult(items, scores), cand, cand_scores, is_cold, top_k, max_cold, placement)
        ref_items, ref_scores = _reference_merge(items, scores, cand, cand_scores, is_cold, top_k, max_cold, placement)
        assert torch.equal(merged.items, ref_items), trial
        torch.testing.assert_close(merged.scores, ref_scores)
        plain_cold = (is_cold[items.clamp(min=0)] & (items >= 0)).sum(1)
        cold_count = (is_cold[merged.items.clamp(min=0)] & (merged.items >= 0)).sum(1)
        assert (cold_count <= torch.clamp(plain_cold, min=max_cold)).all()  # the cap: plain's own cold items never removed


@pytest.mark.parametrize("kind", ["t5", "causal"])
def test_content_drafts_are_the_nearest_cold_items_scored_by_their_prefix(kind):
    vocab, model, item_tokens, _, catalogue, ids, mask, history = _setup(kind)
    settings = ColdStartSettings(method="content", drafts=5, content_weight=2.0)
    items, scores = content_candidates(model, ids, mask, history, catalogue, settings)
    knn = SemanticKNN(catalogue.knn.item_vectors)
    cos = knn.similarities(history)  # (B, N)
    prefix_scores = score_all_items(model, ids, mask, catalogue.prefix_tokens)
    for user in range(len(ids)):
        cold_cos = cos[user, catalogue.cold]
        in_history = torch.isin(catalogue.cold, history[user])  # a history's own items are never drafted
        expected = catalogue.cold[torch.sort(cold_cos.masked_fill(in_history, float("-inf")), descending=True, stable=True).indices[:5]]
        assert items[user].tolist() == expected.tolist()
        for item, score in zip(items[user].tolist(), scores[user].tolist(), strict=True):
            assert score == pytest.approx(float(prefix_scores[user, item] + 2.0 * cos[user, item]), abs=1e-4)


@pytest.mark.parametrize("method", ["prefix", "content", "fusion"])
def test_an_item_added_after_training_is_recommendable(method):
    """A new item (new code combination, appended to the catalogue) reaches top-10 lists; the cap holds."""
    vocab, model, item_tokens, _, _, ids, mask, history = _setup("t5", num_cold=0)
    taken = {tuple(t) for t in item_tokens.tolist()}
    new = next(vocab.codes_to_tokens(torch.tensor([[a, b, 0]]))[0] for a in range(6) for b in range(6)
               if tuple(vocab.codes_to_tokens(torch.tensor([[a, b, 0]]))[0].tolist()) not in taken)
    catalogue_tokens = torch.cat([item_tokens, new[None]])
    cold = torch.zeros(len(catalogue_tokens), dtype=torch.bool)
    cold[-1] = True
    embeddings = torch.randn(len(catalogue_tokens), 8, generator=torch.Generator().manual_seed(1))
    catalogue = ColdCatalogue(catalogue_tokens, cold, vocab.level_ranges, item_embeddings=embeddings)
    trie = PrefixTrie.from_item_tokens(catalogue_tokens, vocab)
    # fusion: the content ranking covers the catalogue and a cold item's weight dwarfs the rest, so every list takes it
    extra = {"drafts": 200, "cold_boost": 1000.0} if method == "fusion" else {}
    settings = GenerationSettings(cold_start=ColdStartSettings(method=method, epsilon=0.1, **extra))
    found = search(model, ids, mask, trie, top_k=10, settings=settings, cold_catalogue=catalogue, history_items=history)
    new_index = len(catalogue_tokens) - 1
    assert (found.items == new_index).any(dim=1).all()  # one cold slot, one cold item: every list takes it
    assert ((found.items == new_index).sum(dim=1) == 1).all()


def test_semantic_knn_ranks_by_cosine_and_checks_its_inputs():
    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(30, 6, generator=gen)
    knn = SemanticKNN(embeddings)
    history = torch.tensor([[0, 1, -1], [5, -1, -1]])
    items, cosines = knn.rank(history, 4)
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    for row, hist in enumerate(([0, 1], [5])):
        user = torch.nn.functional.normalize(unit[hist].sum(0), dim=0)
        expected = sorted(range(30), key=lambda i: (-float(unit[i] @ user), i))[:4]
        assert items[row].tolist() == expected
        torch.testing.assert_close(cosines[row], unit[expected] @ user)
    subset = torch.tensor([3, 7, 11])
    sub_items, _ = knn.rank(history, 2, items=subset)
    assert set(sub_items.flatten().tolist()) <= {3, 7, 11}
    with pytest.raises(ValueError, match="at least one item"):
        knn.user_vectors(torch.tensor([[-1, -1]]))
    with pytest.raises(ValueError, match="cold_start.method"):
        ColdStartSettings(method="tiger")
    with pytest.raises(ValueError, match="epsilon"):
        ColdStartSettings(epsilon=1.5)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['epsilom'\]"):
        GenerationSettings(cold_start={"method": "prefix", "epsilom": 0.2})
    assert ColdStartSettings.from_dict({"epsilon": 0.3}, base=ColdStartSettings(method="prefix")).method == "prefix"


def test_a_negative_score_offset_makes_cold_items_rarer():
    vocab, model, _, trie, catalogue, ids, mask, history = _setup("t5")
    plain = search(model, ids, mask, trie, top_k=10)
    counts = []
    for offset in (0.0, -2.0, -1e9):
        settings = GenerationSettings(cold_start=ColdStartSettings(method="prefix", epsilon=0.3, score_offset=offset))
        found = search(model, ids, mask, trie, top_k=10, settings=settings, cold_catalogue=catalogue)
        counts.append(int(catalogue.is_cold[found.items.clamp(min=0)].sum()))
        if offset == -1e9:
            assert torch.equal(found.items, plain.items)
    plain_count = int(catalogue.is_cold[plain.items.clamp(min=0)].sum())
    assert counts[0] >= counts[1] >= counts[2] == plain_count and counts[0] > plain_count


def _reference_fusion(plain, content, is_cold, top_k, max_cold, weight, boost):
    """Plain Python reciprocal-rank fusion with the cold cap (ties: the plain list's order, then the content ranking's)."""
    out = []
    for row in range(len(plain)):
        fused, first_seen = {}, {}
        plain_items = [int(i) for i in plain[row][:top_k] if i >= 0]
        for rank, item in enumerate(int(i) for i in plain[row][:top_k]):
            if item >= 0:
                fused[item] = fused.get(item, 0.0) + 1.0 / (RANK_CONSTANT + 1 + rank)
                first_seen.setdefault(item, rank)
        for rank, item in enumerate(int(i) for i in content[row]):
            if item >= 0:
                w = weight * (boost if is_cold[item] else 1.0)
                fused[item] = fused.get(item, 0.0) + w / (RANK_CONSTANT + 1 + rank)
                first_seen.setdefault(item, top_k + rank)
        room = max(0, max_cold - sum(bool(is_cold[i]) for i in plain_items))
        added_cold = sorted((i for i in fused if is_cold[i] and i not in plain_items), key=lambda i: (-fused[i], first_seen[i]))
        for item in added_cold[room:]:
            del fused[item]
        ranked = sorted(fused, key=lambda i: (-fused[i], first_seen[i]))[:top_k]
        out.append(([*ranked, *[-1] * (top_k - len(ranked))], [fused[i] for i in ranked] + [float("-inf")] * (top_k - len(ranked))))
    return torch.tensor([o[0] for o in out]), torch.tensor([o[1] for o in out])


def test_fusion_matches_a_plain_python_reference_and_respects_the_cap():
    gen = torch.Generator().manual_seed(0)
    top_k, is_cold = 10, COLD_TAIL
    for trial in range(24):
        plain = _plain_lists(gen, 5, top_k, trial, cold_item=33, place=2)
        plain[1, -3:] = -1  # a row with fewer reachable items
        content = torch.stack([torch.randperm(len(is_cold), generator=gen)[:8] for _ in range(5)])  # warm and cold, overlapping plain
        content[2, -2:] = -1
        max_cold, weight, boost = trial % 4, (0.5, 1.0, 2.0)[trial % 3], (1.0, 3.0)[trial % 2]
        found = SearchResult(plain, torch.zeros(plain.shape))
        fused = fuse_rankings(found, content, is_cold, top_k, max_cold, weight, boost)
        ref_items, ref_scores = _reference_fusion(plain, content, is_cold, top_k, max_cold, weight, boost)
        assert torch.equal(fused.items, ref_items), trial
        torch.testing.assert_close(fused.scores, ref_scores)
        plain_cold = (is_cold[plain.clamp(min=0)] & (plain >= 0)).sum(1)
        cold_count = (is_cold[fused.items.clamp(min=0)] & (fused.items >= 0)).sum(1)
        assert (cold_count <= torch.clamp(plain_cold, min=max_cold)).all()
    # weight 0: the plain list comes back in its order (content-only warm items score 0 and fall behind it)
    plain = torch.arange(10)[None]
    fused = fuse_rankings(SearchResult(plain, torch.zeros(1, 10)), torch.arange(20, 30)[None], is_cold, 10, 0, 0.0)
    assert fused.items.tolist() == plain.tolist()


def test_semantic_knn_weights_recent_items_and_leaves_out_excluded_ones():
    gen = torch.Generator().manual_seed(2)
    knn = SemanticKNN(torch.randn(20, 5, generator=gen))
    unit = knn.item_vectors
    history = torch.tensor([[3, 7, 9, -1], [-1, 4, 2, -1]])  # padding anywhere; time order left to right
    torch.testing.assert_close(knn.user_vectors(history, history_decay=0.0), unit[[9, 2]])  # the last item alone
    expected = torch.nn.functional.normalize(0.25 * unit[3] + 0.5 * unit[7] + unit[9], dim=0)
    torch.testing.assert_close(knn.user_vectors(history, history_decay=0.5)[0], expected)
    torch.testing.assert_close(knn.user_vectors(history, history_decay=1.0), knn.user_vectors(history))
    items, cosines = knn.rank(history, 20, exclude=history)
    for row, seen in enumerate(({3, 7, 9}, {4, 2})):
        kept = [i for i in items[row].tolist() if i >= 0]
        assert len(kept) == 20 - len(seen) and not seen & set(kept)
        assert items[row, len(kept):].eq(-1).all() and torch.isinf(cosines[row, len(kept):]).all()
    with pytest.raises(ValueError, match="history_decay"):
        knn.user_vectors(history, history_decay=1.5)
    with pytest.raises(ValueError, match="history_decay"):
        ColdStartSettings(history_decay=-0.1)
    with pytest.raises(ValueError, match="fusion_weight"):
        ColdStartSettings(method="fusion", fusion_weight=-1.0)


@pytest.mark.parametrize("method", ["content", "fusion"])
def test_evaluation_names_the_methods_it_cannot_run(method):
    from genrec.eval.evaluate import evaluate_generative

    with pytest.raises(ValueError, match=rf"cold_start.method='{method}' needs history items"):
        evaluate_generative(None, None, None, None, cold_start=ColdStartSettings(method=method))
