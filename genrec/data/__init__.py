"""Datasets, splits, item text, cached embeddings and SID-token sequences.

Raw-data downloaders/converters live in :mod:`genrec.data.download` (``python -m genrec.data.download --help``).
"""

from genrec.data.embed import EmbeddingStats, default_model_path, embed_texts
from genrec.data.features import (
    AttributeFeatures,
    ItemFeatures,
    TextFeatures,
    VectorFileFeatures,
    build_features,
)
from genrec.data.io import (
    DataError,
    RecDataset,
    load_dataset,
    load_interactions,
    load_items,
    resolve_data_dir,
)
from genrec.data.sequences import (
    IGNORE_INDEX,
    CausalCollator,
    EveryTargetCollator,
    Seq2SeqCollator,
    build_causal_dataset,
    build_causal_window_dataset,
    build_every_target_dataset,
    build_seq2seq_dataset,
    causal_windows,
    without_level_loss,
)
from genrec.data.split import MAX_HISTORY, Examples, SplitData, SplitSettings, leave_one_out_split
from genrec.data.text import DEFAULT_TEMPLATES, default_template, item_texts

__all__ = [
    "DEFAULT_TEMPLATES", "IGNORE_INDEX", "MAX_HISTORY", "SplitSettings", "CausalCollator", "DataError", "EmbeddingStats", "Examples", "RecDataset",
    "EveryTargetCollator", "Seq2SeqCollator", "SplitData", "build_causal_dataset", "build_causal_window_dataset",
    "build_every_target_dataset", "build_seq2seq_dataset",
    "causal_windows", "default_model_path", "without_level_loss",
    "default_template", "embed_texts", "item_texts", "leave_one_out_split", "load_dataset", "load_interactions",
    "load_items", "resolve_data_dir", "AttributeFeatures", "ItemFeatures", "TextFeatures", "VectorFileFeatures", "build_features",
]
