"""Collision-aware regularisers for trainable quantisers (QuaSID, AdaSID, LETTER-style terms).

Each is a :class:`genrec.tokenizer.base.Regularizer`: pass them to ``Quantizer.fit(x, regularizers=...)``.
Build them from a config dict or a preset with :func:`build_regularizers`; see docs/regularizers.md.
"""

from genrec.tokenizer.regularizers.adasid import AdaSIDRegularizer, RegularizerGroup
from genrec.tokenizer.regularizers.contrastive import DualTowerContrastive
from genrec.tokenizer.regularizers.diversity import CodeDiversity, uniformity
from genrec.tokenizer.regularizers.factory import (
    PRESETS,
    SECTION_DEFAULTS,
    build_regularizers,
    preset,
    resolve_config,
)
from genrec.tokenizer.regularizers.masks import (
    GroupMask,
    NearDuplicateMask,
    PairMask,
    SelfPairMask,
    encode_groups,
)
from genrec.tokenizer.regularizers.repulsion import HammingMarginRepulsion
from genrec.tokenizer.regularizers.stats import EpochStats
from genrec.tokenizer.regularizers.weighting import (
    CollisionLoadWeight,
    PairWeight,
    ProgressSchedule,
    SemanticCompatibilityGate,
)

__all__ = [
    "PRESETS", "SECTION_DEFAULTS", "AdaSIDRegularizer", "CodeDiversity", "CollisionLoadWeight", "DualTowerContrastive", "EpochStats", "GroupMask",
    "HammingMarginRepulsion", "NearDuplicateMask", "PairMask", "PairWeight", "ProgressSchedule", "RegularizerGroup", "SelfPairMask",
    "SemanticCompatibilityGate", "build_regularizers", "encode_groups", "preset", "resolve_config", "uniformity",
]
