"""Datasets, splits, item text, cached embeddings and SID-token sequences."""

from genrec.data.embed import embed_texts
from genrec.data.io import DataError, RecDataset, load_dataset, load_interactions, load_items, resolve_data_dir
from genrec.data.sequences import CausalCollator, Seq2SeqCollator, build_causal_dataset, build_seq2seq_dataset
from genrec.data.split import Examples, SplitData, leave_one_out_split
from genrec.data.text import DEFAULT_TEMPLATES, item_texts

__all__ = [
    "DEFAULT_TEMPLATES", "CausalCollator", "DataError", "Examples", "RecDataset", "Seq2SeqCollator", "SplitData",
    "build_causal_dataset", "build_seq2seq_dataset", "embed_texts", "item_texts", "leave_one_out_split", "load_dataset",
    "load_interactions", "load_items", "resolve_data_dir",
]
