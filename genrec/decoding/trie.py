"""Prefix trie over a catalogue's Semantic IDs, stored as tensors for batched constrained decoding.

A catalogue of ``N`` items with SIDs of depth ``D`` defines a trie: depth ``l`` holds one node per
distinct length-``l`` prefix (depth 0 = the root, depth ``D`` = one leaf per item). Nodes of each
depth are numbered in lexicographic order of their prefixes, so the children of a node are a
contiguous, code-sorted run of the next depth's node ids. Level ``l`` is the transition from depth
``l`` to depth ``l + 1`` by choosing code ``c`` in ``[0, K_l)``; it is stored in one of two layouts:

* ``"dense"``: ``next_node[l]`` of shape ``(num_nodes[l], K_l)``, child node id or -1 (one gather
  per lookup; used while ``num_nodes[l] * K_l * 8`` bytes stays under ``dense_max_bytes``);
* ``"csr"``: ``child_keys[l]`` of shape ``(num_nodes[l + 1],)`` with ``parent * K_l + code`` for each
  child, sorted ascending (a child's id is its position), plus ``child_ptr[l]`` of shape
  ``(num_nodes[l] + 1,)`` delimiting each parent's run. Lookups are one ``searchsorted``.

Every method takes and returns batched tensors; node id -1 means "no node" (a dead prefix) and is
accepted everywhere, so callers never branch per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from genrec.vocab import TokenSpace

Layout = Literal["auto", "dense", "csr"]

DEFAULT_DENSE_MAX_BYTES = 32 * 2**20


class PrefixTrie:
    """Tensor prefix trie of a catalogue's SIDs. Build it with :meth:`from_item_tokens` or :meth:`from_codes`.

    Attributes:
        codebook_sizes: ``K_l`` for each level, length ``D``.
        level_offsets: token id of code 0 at each level (``TokenSpace.level_offsets``), or None when the
            trie was built from raw codes without a vocabulary.
        num_nodes: number of nodes at each depth ``0..D`` (``num_nodes[0] == 1``, ``num_nodes[D] == N``).
        layouts: ``"dense"`` or ``"csr"`` for each level.
        leaf_to_item: ``(N,)`` long, item index of each leaf.
    """

    def __init__(
        self,
        codebook_sizes: tuple[int, ...],
        level_offsets: tuple[int, ...] | None,
        num_nodes: tuple[int, ...],
        next_node: list[torch.Tensor | None],
        child_keys: list[torch.Tensor],
        child_ptr: list[torch.Tensor],
        leaf_to_item: torch.Tensor,
    ):
        self.codebook_sizes = codebook_sizes
        self.level_offsets = level_offsets
        self.num_nodes = num_nodes
        self.next_node = next_node
        self.child_keys = child_keys
        self.child_ptr = child_ptr
        self.leaf_to_item = leaf_to_item
        self.layouts = tuple("dense" if table is not None else "csr" for table in next_node)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_item_tokens(
        cls,
        item_tokens: torch.Tensor,
        vocab: TokenSpace | None = None,
        *,
        level_ranges: Sequence[tuple[int, int]] | None = None,
        layout: Layout = "auto",
        dense_max_bytes: int = DEFAULT_DENSE_MAX_BYTES,
    ) -> PrefixTrie:
        """Build from token ids.

        Args:
            item_tokens: ``(N, D)`` int token ids, row ``i`` = item ``i``'s SID (``level_offsets[l] + code``).
            vocab: the :class:`~genrec.vocab.TokenSpace` the tokens come from; or give ``level_ranges`` instead.
            level_ranges: ``D`` pairs ``(first_token_id, codebook_size)``.
            layout: ``"auto"`` (dense while small, CSR otherwise), or force ``"dense"`` / ``"csr"`` for all levels.
            dense_max_bytes: per-level size limit of a dense table under ``"auto"``.
        """
        if (vocab is None) == (level_ranges is None):
            raise ValueError("give exactly one of `vocab` or `level_ranges`")
        if vocab is not None:
            level_ranges = list(zip(vocab.level_offsets, vocab.codebook_sizes, strict=True))
        offsets = tuple(int(first) for first, _ in level_ranges)
        sizes = tuple(int(size) for _, size in level_ranges)
        item_tokens = _check_matrix(item_tokens, len(sizes), "item_tokens")
        codes = item_tokens - torch.tensor(offsets, dtype=torch.long, device=item_tokens.device)
        _check_code_ranges(codes, sizes, offsets, "token")
        return cls._build(codes, sizes, offsets, layout, dense_max_bytes)

    @classmethod
    def from_codes(
        cls,
        codes: torch.Tensor,
        codebook_sizes: Sequence[int],
        *,
        level_offsets: Sequence[int] | None = None,
        layout: Layout = "auto",
        dense_max_bytes: int = DEFAULT_DENSE_MAX_BYTES,
    ) -> PrefixTrie:
        """Build from per-level codes ``(N, D)`` with ``0 <= codes[:, l] < codebook_sizes[l]``."""
        sizes = tuple(int(k) for k in codebook_sizes)
        codes = _check_matrix(codes, len(sizes), "codes")
        _check_code_ranges(codes, sizes, None, "code")
        offsets = tuple(int(o) for o in level_offsets) if level_offsets is not None else None
        return cls._build(codes, sizes, offsets, layout, dense_max_bytes)

    @classmethod
    def _build(cls, codes, sizes, offsets, layout: Layout, dense_max_bytes: int) -> PrefixTrie:
        if layout not in ("auto", "dense", "csr"):
            raise ValueError(f"layout must be 'auto', 'dense' or 'csr', got {layout!r}")
        num_items, depth = codes.shape
        order = _lexicographic_order(codes, sizes)
        sorted_codes = codes[order]
        _check_unique(sorted_codes, order)

        # starts_node[i]: sorted row i is the first row of its depth-l prefix (a new node at depth l).
        starts_node = torch.zeros(num_items, dtype=torch.bool, device=codes.device)
        starts_node[0] = True
        node_of_row = torch.zeros(num_items, dtype=torch.long, device=codes.device)  # depth-0 node: the root
        num_nodes = [1]
        next_node, child_keys, child_ptr = [], [], []
        for level in range(depth):
            column = sorted_codes[:, level]
            starts_node = starts_node.clone()
            starts_node[1:] |= column[1:] != column[:-1]
            parents = node_of_row[starts_node]  # depth-l parent of every depth-(l+1) node, ascending
            child_codes = column[starts_node]
            keys = parents * sizes[level] + child_codes  # globally sorted: parents ascend, codes ascend within
            n_parents, n_children = num_nodes[-1], int(keys.numel())
            child_keys.append(keys)
            child_ptr.append(_run_starts(parents, n_parents))
            use_dense = layout == "dense" or (layout == "auto" and n_parents * sizes[level] * 8 <= dense_max_bytes)
            if use_dense:
                table = torch.full((n_parents * sizes[level],), -1, dtype=torch.long, device=codes.device)
                table[keys] = torch.arange(n_children, device=codes.device)
                next_node.append(table.view(n_parents, sizes[level]))
            else:
                next_node.append(None)
            node_of_row = torch.cumsum(starts_node, 0) - 1
            num_nodes.append(n_children)
            del parents, child_codes, column
        return cls(sizes, offsets, tuple(num_nodes), next_node, child_keys, child_ptr, order)

    # ------------------------------------------------------------------ properties

    @property
    def depth(self) -> int:
        return len(self.codebook_sizes)

    @property
    def num_items(self) -> int:
        return self.num_nodes[-1]

    @property
    def device(self) -> torch.device:
        return self.leaf_to_item.device

    def memory_bytes(self) -> int:
        """Bytes held by the trie's tensors."""
        tensors = [self.leaf_to_item, *self.child_keys, *self.child_ptr, *(t for t in self.next_node if t is not None)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str) -> PrefixTrie:
        """A copy on ``device`` (``self`` when already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return PrefixTrie(
            self.codebook_sizes,
            self.level_offsets,
            self.num_nodes,
            [t.to(device) if t is not None else None for t in self.next_node],
            [t.to(device) for t in self.child_keys],
            [t.to(device) for t in self.child_ptr],
            self.leaf_to_item.to(device),
        )

    def __repr__(self) -> str:
        return (
            f"PrefixTrie(num_items={self.num_items}, codebook_sizes={self.codebook_sizes}, "
            f"num_nodes={self.num_nodes}, layouts={self.layouts}, memory_bytes={self.memory_bytes()})"
        )

    # ------------------------------------------------------------------ lookups

    def step(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Child of each depth-``level`` node by ``code``: ``(M,)`` long node ids at depth ``level + 1``, -1 if none.

        ``nodes`` and ``codes`` are broadcastable long tensors; node -1 and codes outside ``[0, K_l)`` give -1.
        """
        self._check_level(level)
        nodes, codes = torch.broadcast_tensors(nodes.long(), codes.long())
        size = self.codebook_sizes[level]
        valid = (nodes >= 0) & (codes >= 0) & (codes < size)
        safe_nodes, safe_codes = nodes.clamp(min=0), codes.clamp(0, size - 1)
        table = self.next_node[level]
        if table is not None:
            child = table[safe_nodes, safe_codes]
        else:
            keys = self.child_keys[level]
            query = safe_nodes * size + safe_codes
            position = torch.searchsorted(keys, query.reshape(-1)).view(query.shape)
            position = position.clamp(max=keys.numel() - 1)
            child = torch.where(keys[position] == query, position, -1)
        return torch.where(valid, child, -1)

    def allowed_mask(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """``(M, K_l)`` bool: which codes continue each depth-``level`` node (all False for node -1)."""
        self._check_level(level)
        nodes = nodes.long().reshape(-1)
        size = self.codebook_sizes[level]
        valid = nodes >= 0
        table = self.next_node[level]
        if table is not None:
            return (table[nodes.clamp(min=0)] >= 0) & valid[:, None]
        # CSR: scatter each node's run of child codes into its row.
        ptr, keys = self.child_ptr[level], self.child_keys[level]
        safe = nodes.clamp(min=0)
        start, count = ptr[safe], (ptr[safe + 1] - ptr[safe]) * valid
        total = int(count.sum())
        rows = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), count, output_size=total)
        run_start = torch.cumsum(count, 0) - count
        positions = start[rows] + torch.arange(total, device=nodes.device) - run_start[rows]
        mask = torch.zeros(nodes.numel(), size, dtype=torch.bool, device=nodes.device)
        mask[rows, keys[positions] % size] = True
        return mask

    def walk(self, prefix_codes: torch.Tensor) -> torch.Tensor:
        """``(M, L)`` codes of length-``L`` prefixes -> ``(M,)`` depth-``L`` node ids (-1 for prefixes not in the trie)."""
        nodes = torch.zeros(prefix_codes.shape[0], dtype=torch.long, device=prefix_codes.device)
        for level in range(prefix_codes.shape[1]):
            nodes = self.step(level, nodes, prefix_codes[:, level])
        return nodes

    def leaf_items(self, nodes: torch.Tensor) -> torch.Tensor:
        """Item index of each leaf (depth-``D`` node id), -1 for node -1."""
        nodes = nodes.long()
        return torch.where(nodes >= 0, self.leaf_to_item[nodes.clamp(min=0)], -1)

    def codes_to_tokens(self, level: int, codes: torch.Tensor) -> torch.Tensor:
        """Token ids of level-``level`` codes (needs ``level_offsets``)."""
        if self.level_offsets is None:
            raise ValueError("this trie was built from codes without level_offsets; it cannot produce token ids")
        return codes + self.level_offsets[level]

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.depth:
            raise IndexError(f"level {level} out of range for a trie of depth {self.depth}")


# ---------------------------------------------------------------------- build helpers


def _check_matrix(values: torch.Tensor, depth: int, name: str) -> torch.Tensor:
    if not isinstance(values, torch.Tensor) or values.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (num_items, depth) tensor")
    if values.dtype.is_floating_point or values.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {values.dtype}")
    if values.shape[0] == 0:
        raise ValueError(f"{name} is empty: a trie needs at least one item")
    if values.shape[1] != depth:
        raise ValueError(f"{name} has depth {values.shape[1]}, but {depth} levels were given")
    return values.long()


def _check_code_ranges(codes: torch.Tensor, sizes, offsets, unit: str) -> None:
    bounds = torch.tensor(sizes, dtype=torch.long, device=codes.device)
    bad = (codes < 0) | (codes >= bounds)
    if bool(bad.any()):
        item, level = (int(v) for v in bad.nonzero()[0])
        value = int(codes[item, level]) + (offsets[level] if offsets else 0)
        first = offsets[level] if offsets else 0
        raise ValueError(
            f"item {item}, level {level}: {unit} {value} outside the level's range "
            f"[{first}, {first + sizes[level]}) ({int(bad.any(1).sum())} items affected)"
        )


def _lexicographic_order(codes: torch.Tensor, sizes) -> torch.Tensor:
    """Permutation sorting the rows of ``codes`` lexicographically (stable: equal rows keep item order)."""
    capacity = 1
    for k in sizes:
        capacity *= k
    if capacity < 2**62:  # one packed int64 key per row, one sort
        key = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for level, k in enumerate(sizes):
            key = key * k + codes[:, level]
        return torch.sort(key, stable=True).indices
    order = torch.arange(codes.shape[0], device=codes.device)
    for level in reversed(range(codes.shape[1])):  # least significant column first, stable sorts
        order = order[torch.sort(codes[order, level], stable=True).indices]
    return order


def _check_unique(sorted_codes: torch.Tensor, order: torch.Tensor) -> None:
    same_as_previous = (sorted_codes[1:] == sorted_codes[:-1]).all(dim=1)
    if bool(same_as_previous.any()):
        rows = same_as_previous.nonzero().squeeze(1)
        pairs = [(int(order[r]), int(order[r + 1])) for r in rows[:5].tolist()]
        examples = ", ".join(f"items {a} and {b} share SID {sorted_codes[r].tolist()}" for (a, b), r in zip(pairs, rows[:5].tolist(), strict=True))
        raise ValueError(f"duplicate SIDs: {len(rows)} items repeat an earlier item's SID ({examples})")


def _run_starts(parents: torch.Tensor, num_parents: int) -> torch.Tensor:
    """``(num_parents + 1,)`` offsets of each parent's run in the ascending ``parents`` array."""
    counts = torch.bincount(parents, minlength=num_parents)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
