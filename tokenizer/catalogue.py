"""The SID table of a whole catalogue from a fitted quantiser, with or without held-out (cold) items."""

from __future__ import annotations

import numpy as np
import torch

from genrec.tokenizer.artifact import SIDTokenizer
from genrec.tokenizer.sid import SIDTable


def encode_catalogue(quantizer, x: torch.Tensor, item_ids: list[str], cold: np.ndarray | None) -> SIDTable:
    """The SID table of the whole catalogue, in catalogue order.

    Without ``cold`` every item is encoded and deduplicated at once. With it, the warm items are
    encoded first; the cold items then go through :meth:`SIDTokenizer.encode` as new items would
    after deployment (their dedup codes continue after the warm items sharing their codes).

    Args:
        quantizer: a fitted quantiser.
        x: (N, d_in) inputs of the N catalogue items, row i = ``item_ids[i]``.
        item_ids: the N item ids.
        cold: (N,) bool mask of the items held out of fitting, or None.

    Returns:
        A :class:`SIDTable` with N rows of L+1 codes (dedup code last), in catalogue order.
    """
    codes = quantizer.encode(x).cpu()
    if cold is None:
        return SIDTable.from_codes(item_ids, codes, quantizer.codebook_sizes)
    warm_idx, cold_idx = np.flatnonzero(~cold), np.flatnonzero(cold)
    warm_table = SIDTable.from_codes([item_ids[i] for i in warm_idx], codes[torch.from_numpy(warm_idx)], quantizer.codebook_sizes)
    tokenizer = SIDTokenizer(quantizer, warm_table, embedding_dim=x.shape[1])
    tokenizer.encode(x[torch.from_numpy(cold_idx)], [item_ids[i] for i in cold_idx], add_to_table=True)
    order = np.argsort(np.concatenate([warm_idx, cold_idx]))  # table rows (warm, then cold) -> catalogue order
    return SIDTable(list(item_ids), tokenizer.table.sids[torch.from_numpy(order)], tokenizer.table.codebook_sizes)


__all__ = ["encode_catalogue"]
