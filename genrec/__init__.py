"""genrec: generative recommendation on Semantic IDs.

Sub-packages: ``genrec.data`` (datasets, splits, embeddings), ``genrec.tokenizer`` (SID quantisers),
``genrec.models`` (T5 / decoder-only / LoRA recommenders), ``genrec.decoding`` (trie-constrained beam
search), ``genrec.training`` (Accelerate loop), ``genrec.eval`` (metrics, comparisons), and
``genrec.pipeline`` (:class:`GenerativeRecommender`: load, recommend, save, share a trained model).
Importing ``genrec`` is cheap: nothing heavy is imported here; ``genrec.GenerativeRecommender``
imports the pipeline (and torch) on first use.
"""

__version__ = "0.1.0"

_LAZY = {"GenerativeRecommender": "genrec.pipeline"}

__all__ = ["GenerativeRecommender", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'genrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
