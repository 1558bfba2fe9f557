"""PrefixTrie: construction, both layouts against a plain-Python reference, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from genrec.decoding import PrefixTrie
from genrec.vocab import SIDVocab


def random_codes(sizes, num_items, seed):
    """Unique random SIDs in a random item order."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, k, (num_items,), generator=gen) for k in sizes], dim=1)
    codes = torch.unique(codes, dim=0)
    return codes[torch.randperm(len(codes), generator=gen)]


def reference_children(codes):
    """prefix tuple -> set of allowed next codes, by brute force."""
    children = {}
    for row in codes.tolist():
        for level in range(len(row)):
            children.setdefault(tuple(row[:level]), set()).add(row[level])
    return children


@pytest.mark.parametrize("layout", ["dense", "csr", "auto"])
@pytest.mark.parametrize("sizes", [(4, 5, 3), (6, 3, 4, 2)])
def test_trie_matches_reference(layout, sizes):
    codes = random_codes(sizes, 150, seed=len(sizes))
    trie = PrefixTrie.from_codes(codes, sizes, layout=layout)
    children = reference_children(codes)
    assert trie.num_items == len(codes) and trie.depth == len(sizes)
    assert trie.num_nodes == tuple(len({tuple(r[:level]) for r in codes.tolist()}) for level in range(len(sizes) + 1))
    # Every item's SID walks to a leaf that maps back to that item.
    assert torch.equal(trie.leaf_items(trie.walk(codes)), torch.arange(len(codes)))
    for level, size in enumerate(sizes):
        all_prefixes = list(itertools.product(*[range(k) for k in sizes[:level]]))  # [()] at level 0
        prefixes = torch.tensor(all_prefixes, dtype=torch.long).view(len(all_prefixes), level)
        nodes = trie.walk(prefixes)
        mask = trie.allowed_mask(level, nodes)
        for prefix, node, row in zip(prefixes.tolist(), nodes.tolist(), mask, strict=True):
            expected = children.get(tuple(prefix), set())
            assert (node >= 0) == bool(expected)
            assert set(row.nonzero().squeeze(1).tolist()) == expected
            for code in range(size):
                child = int(trie.step(level, torch.tensor([node]), torch.tensor([code])))
                assert (child >= 0) == (code in expected)


def test_dense_and_csr_are_identical():
    sizes = (5, 4, 6)
    codes = random_codes(sizes, 90, seed=3)
    dense = PrefixTrie.from_codes(codes, sizes, layout="dense")
    csr = PrefixTrie.from_codes(codes, sizes, layout="csr")
    assert dense.layouts == ("dense",) * 3 and csr.layouts == ("csr",) * 3
    gen = torch.Generator().manual_seed(0)
    nodes = {0: torch.zeros(1, dtype=torch.long)}
    for level in range(1, 3):
        nodes[level] = torch.arange(-1, dense.num_nodes[level])
    for level in range(3):
        assert torch.equal(dense.allowed_mask(level, nodes[level]), csr.allowed_mask(level, nodes[level]))
        queries = nodes[level][torch.randint(0, len(nodes[level]), (200,), generator=gen)]
        query_codes = torch.randint(-1, sizes[level] + 1, (200,), generator=gen)  # includes out-of-range codes
        assert torch.equal(dense.step(level, queries, query_codes), csr.step(level, queries, query_codes))
    assert csr.memory_bytes() < dense.memory_bytes()


def test_auto_layout_switches_to_csr_over_the_memory_threshold():
    sizes = (8, 64, 64)
    codes = random_codes(sizes, 300, seed=1)
    trie = PrefixTrie.from_codes(codes, sizes, dense_max_bytes=8 * 64 * 8)  # only level 0 (1 x 8) and level 1 (8 x 64)
    assert trie.layouts == ("dense", "dense", "csr")
    assert torch.equal(trie.leaf_items(trie.walk(codes)), torch.arange(len(codes)))


def test_dead_nodes_and_bad_codes_are_harmless():
    sizes = (3, 3)
    trie = PrefixTrie.from_codes(torch.tensor([[0, 1], [2, 0]]), sizes, layout="csr")
    dead = torch.tensor([-1])
    assert not trie.allowed_mask(1, dead).any()
    assert int(trie.step(0, torch.tensor([0]), torch.tensor([7]))) == -1
    assert int(trie.step(1, dead, torch.tensor([0]))) == -1
    assert int(trie.leaf_items(dead)) == -1
    assert int(trie.walk(torch.tensor([[1, 0]]))) == -1  # prefix not in the catalogue


def test_from_item_tokens_vocab_and_level_ranges_agree():
    vocab = SIDVocab((4, 5, 3))
    codes = random_codes(vocab.codebook_sizes, 40, seed=2)
    tokens = vocab.codes_to_tokens(codes)
    a = PrefixTrie.from_item_tokens(tokens, vocab)
    b = PrefixTrie.from_item_tokens(tokens, level_ranges=list(zip(vocab.level_offsets, vocab.codebook_sizes, strict=True)))
    assert a.level_offsets == vocab.level_offsets and a.num_nodes == b.num_nodes
    assert torch.equal(a.leaf_to_item, b.leaf_to_item)
    assert a.to("cpu") is a


def test_single_item_catalogue():
    trie = PrefixTrie.from_codes(torch.tensor([[2, 0, 1]]), (3, 2, 2))
    assert trie.num_nodes == (1, 1, 1, 1)
    assert trie.allowed_mask(0, torch.tensor([0])).tolist() == [[False, False, True]]
    assert int(trie.leaf_items(trie.walk(torch.tensor([[2, 0, 1]])))) == 0


def test_huge_codebooks_use_the_multi_sort_path():
    sizes = (2**21, 2**21, 2**21)  # 2**63 SIDs: too many for one packed int64 sort key
    codes = torch.tensor([[5, 2**21 - 1, 0], [5, 3, 9], [0, 0, 0], [2**21 - 1, 1, 1]])
    trie = PrefixTrie.from_codes(codes, sizes)
    assert trie.layouts[1:] == ("csr", "csr")
    assert torch.equal(trie.leaf_items(trie.walk(codes)), torch.arange(4))
    assert trie.leaf_to_item.tolist() == [2, 1, 0, 3]  # leaves in lexicographic order


def test_duplicate_sids_are_an_error_naming_the_items():
    codes = torch.tensor([[0, 1, 1], [1, 0, 0], [0, 1, 1]])
    with pytest.raises(ValueError, match=r"items 0 and 2 share SID \[0, 1, 1\]"):
        PrefixTrie.from_codes(codes, (2, 2, 2))


def test_out_of_range_tokens_are_an_error_naming_item_and_level():
    vocab = SIDVocab((4, 4))
    tokens = vocab.codes_to_tokens(torch.tensor([[0, 1], [1, 2]]))
    tokens[1, 1] = vocab.level_offsets[0]  # a level-0 token at level 1
    with pytest.raises(ValueError, match="item 1, level 1"):
        PrefixTrie.from_item_tokens(tokens, vocab)
    with pytest.raises(ValueError, match="depth"):
        PrefixTrie.from_item_tokens(tokens[:, :1], vocab)
    with pytest.raises(ValueError, match="empty"):
        PrefixTrie.from_codes(torch.zeros(0, 2, dtype=torch.long), (4, 4))
