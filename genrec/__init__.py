"""genrec: generative recommendation on Semantic IDs.

Sub-packages: ``genrec.data`` (datasets, splits, embeddings), ``genrec.tokenizer`` (SID quantisers),
``genrec.models`` (T5 / decoder-only recommenders), ``genrec.decoding`` (trie-constrained beam
search), ``genrec.training`` (Accelerate loop), ``genrec.eval`` (metrics, comparisons).
Importing ``genrec`` is cheap: nothing heavy is imported here.
"""

__version__ = "0.1.0"
