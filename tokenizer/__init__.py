"""``genrec.tokenizer``: Semantic-ID quantisers, regularisers, the SID table and quality metrics.

Works on tensors only; it knows nothing of the recommender models.
"""

from genrec.tokenizer.base import Quantizer, QuantizerOutput, Regularizer, RegularizerBatch
from genrec.tokenizer.metrics import tokenizer_metrics
from genrec.tokenizer.random_ids import RandomIDs
from genrec.tokenizer.registry import build_quantizer, quantizer_class, register_quantizer
from genrec.tokenizer.rq_kmeans import RQKMeans
from genrec.tokenizer.rq_vae import RQVAE
from genrec.tokenizer.sid import SIDTable, add_dedup_codes

__all__ = [
    "RQKMeans", "RQVAE", "Quantizer", "QuantizerOutput", "RandomIDs", "Regularizer", "RegularizerBatch", "SIDTable",
    "add_dedup_codes", "build_quantizer", "quantizer_class", "register_quantizer", "tokenizer_metrics",
]
