"""``genrec.tokenizer``: Semantic-ID quantisers, the SID table and tokenizer-quality metrics.

Works on tensors only; it knows nothing of the recommender models or of evaluation.

- quantisers (``Quantizer``: ``fit`` / ``encode``), built by name with :func:`build_tokenizer`:
  ``"random"`` :class:`RandomIDs`, ``"rq_kmeans"`` :class:`RQKMeans`, ``"rq_vae"`` :class:`RQVAE`;
  add your own with ``@register_quantizer(name)``; every quantiser declares ``trainable``,
  ``takes_input_dim``, ``learns_fusion`` and ``options``, from which
  :func:`build_quantizer_from_fields` builds it from a config's fields and :func:`training_arguments`
  gives its ``fit`` settings;
- regularisers (:class:`Regularizer`) plug into any trainable quantiser's ``fit``;
- :func:`add_dedup_codes` and :class:`SIDTable` (item <-> SID); a fitted quantiser and its table are
  saved and loaded together as a :class:`SIDTokenizer` (``save_pretrained`` / ``from_pretrained``);
- :func:`tokenizer_metrics` (docs/method.md section 7);
- multimodal input (:mod:`genrec.tokenizer.fusion`): :func:`pack_sources` packs several feature
  sources with presence flags, :class:`ConcatFusion` / :class:`ProjectionFusion` fuse them
  (``RQVAE(..., fusion=config)`` learns the fusion; :class:`FusedQuantizer`, ``"fused"``, puts a
  fixed fusion in front of any quantiser);
- :func:`encode_catalogue`: the SID table of a catalogue, cold (held-out) items encoded afterwards;
- :mod:`genrec.tokenizer.io`: genrec's atomic file and folder writes.
"""

from genrec.tokenizer.artifact import SIDTokenizer
from genrec.tokenizer.base import (
    TRAINING_ARGUMENTS,
    Quantizer,
    QuantizerOutput,
    Regularizer,
    RegularizerBatch,
    TokenizerConfigError,
)
from genrec.tokenizer.catalogue import encode_catalogue
from genrec.tokenizer.collaborative import CFEmbeddings, train_cf_embeddings
from genrec.tokenizer.factory import build_quantizer_from_fields, training_arguments
from genrec.tokenizer.fusion import (
    ConcatFusion,
    FusedQuantizer,
    ProjectionFusion,
    SourceLayout,
    build_fusion,
    compatibility_content,
    fusion_config,
    pack_sources,
)
from genrec.tokenizer.kmeans import kmeans
from genrec.tokenizer.metrics import tokenizer_metrics
from genrec.tokenizer.pairs import candidate_pairs
from genrec.tokenizer.random_ids import RandomIDs
from genrec.tokenizer.registry import build_quantizer, quantizer_class, register_quantizer
from genrec.tokenizer.regularizers import PRESETS, build_regularizers, preset
from genrec.tokenizer.rq_kmeans import RQKMeans
from genrec.tokenizer.rq_vae import RQVAE
from genrec.tokenizer.sid import SIDTable, add_dedup_codes, build_tokenizer
from genrec.tokenizer.text_tokens import add_sid_tokens

__all__ = [
    "RQKMeans", "RQVAE", "Quantizer", "QuantizerOutput", "RandomIDs", "Regularizer", "RegularizerBatch", "SIDTable", "SIDTokenizer",
    "add_dedup_codes", "build_quantizer", "build_tokenizer", "kmeans", "quantizer_class", "register_quantizer",
    "tokenizer_metrics", "CFEmbeddings", "train_cf_embeddings", "candidate_pairs", "PRESETS", "build_regularizers", "preset",
    "add_sid_tokens", "ConcatFusion", "FusedQuantizer", "ProjectionFusion", "SourceLayout",
    "build_fusion", "compatibility_content", "pack_sources", "TRAINING_ARGUMENTS", "TokenizerConfigError", "encode_catalogue",
    "build_quantizer_from_fields", "training_arguments", "fusion_config",
]
