"""Decoding SIDs into catalogue items: a tensor prefix trie and exact, batched trie-constrained beam search.

* :class:`PrefixTrie`: the catalogue's SIDs as per-level transition tables (dense or CSR).
* :func:`constrained_beam_search` (encoder-decoder, e.g. T5) and :func:`constrained_beam_search_causal`
  (decoder-only): top-k items per user.
* :func:`exact_top_k`: the model's exact top-k (certified against every item beam search dropped).
* :func:`search`: the one entry that aligns prompts and picks the decoder; :class:`GenerationSettings`.
* :class:`ColdCatalogue`, :class:`ColdStartSettings`: cold items merged into the lists (:mod:`genrec.decoding.cold_start`).
* :func:`score_all_items`: exhaustive teacher-forced scores (reference for tests, tiny catalogues).
* :class:`TrieLogitsProcessor`, :func:`make_prefix_allowed_tokens_fn`: the same constraint for ``generate``.
"""

from genrec.decoding.beam_search import (
    constrained_beam_search,
    constrained_beam_search_causal,
    score_all_items,
    shared_kv_attention,
)
from genrec.decoding.cold_start import ColdCatalogue
from genrec.decoding.decode import (
    CAUSAL_BATCH_SIZE,
    COLD_METHODS,
    SEARCHES,
    ColdStartSettings,
    GenerationSettings,
    SearchResult,
    left_align,
    search,
)
from genrec.decoding.exact import ExactSearchResult, exact_top_k
from genrec.decoding.processors import TrieLogitsProcessor, make_prefix_allowed_tokens_fn
from genrec.decoding.trie import PrefixTrie

__all__ = [
    "CAUSAL_BATCH_SIZE",
    "COLD_METHODS",
    "SEARCHES",
    "ColdCatalogue",
    "ColdStartSettings",
    "ExactSearchResult",
    "GenerationSettings",
    "SearchResult",
    "PrefixTrie",
    "TrieLogitsProcessor",
    "constrained_beam_search",
    "constrained_beam_search_causal",
    "exact_top_k",
    "left_align",
    "make_prefix_allowed_tokens_fn",
    "score_all_items",
    "search",
    "shared_kv_attention",
]
