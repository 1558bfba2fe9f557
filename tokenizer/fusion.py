"""Fusion of several item feature sources into one tokenizer input (multimodal SIDs).

Tensor-only, like the rest of ``genrec.tokenizer``: where the sources come from (text embeddings,
categorical attributes, image/video vector files) is :mod:`genrec.data.features`' business.

**The packed input.** Every quantiser reads one (N, d_in) tensor, so several sources travel as one
*packed* tensor (:func:`pack_sources`)::

    [ source_1 (d_1) | source_2 (d_2) | ... | source_S (d_S) | present flags (S) ]

Row i holds item i's raw vector of every source (zeros where the item lacks that source) followed by
S flags, 1.0 = the source is present for the item, 0.0 = missing. Missingness is therefore explicit
(a flag, never inferred from a zero vector), and a packed tensor is finite and fits every
quantiser, the :class:`~genrec.tokenizer.SIDTokenizer` artifact (``embedding_dim`` = packed width)
and its cold-start ``encode`` unchanged. :class:`SourceLayout` splits it again.

**Per-source normalisation** (:meth:`Fusion.fit_statistics`, on the training catalogue, stored as
buffers): each present row is L2-normalised (``u``), centred by the catalogue mean ``c_s`` of the
present rows, and scaled by one scalar per source, ``scale_s = sqrt(D / (S tv_s))``, where ``tv_s``
is the mean squared norm of the centred present rows and D the summed source dimension. Every
source block then has the same total variance D / S (times ``weight_s^2``), whatever its dimension:
a 600-d multi-hot does not outweigh a 384-d text embedding by having more columns, and a single
source has average per-dimension variance 1 (as per-dimension standardisation gives). One scalar
per source rather than per-dimension standardisation, because standardising the columns of a
sparse multi-hot turns a rare value into an outlier of size ~1/sqrt(frequency).

**Fusions** (``nn.Module``; :func:`build_fusion` from a config dict):

- :class:`ConcatFusion`: ``concat_s w_s * b_s`` with ``b_s`` the normalised block above; a missing
  row takes the source's *placeholder*: learned (``learned_placeholder=True``, the default, trained
  with the tokenizer) or fixed. Both start at the catalogue mean of the present rows, which is the
  zero vector in centred units; the fixed variant is what the untrained quantisers (random,
  rq_kmeans, through :class:`FusedQuantizer`) use: mean imputation, flagged and counted upstream.
- :class:`ProjectionFusion`: ``sum_s w_s y_s / sum_s w_s`` with ``y_s = W_s b_s + a_s`` (a learned
  linear projection per source into a shared ``dim``) for present rows and a learned placeholder
  ``p_s`` (initialised to ``a_s``, the projection of the catalogue mean) for missing ones: a weighted
  mean over the sources where each missing source is stood in for by its learned placeholder. A
  linear map of a multi-hot is a sum of learned per-value embeddings, so this is also how
  categorical attributes get *learned* embeddings.

**Non-collapse.** A learned fusion trained only through a quantiser's loss could shrink to a
constant. So the RQ-VAE (``RQVAE(..., fusion=config)``) *reads* ``fusion(x)`` but *reconstructs*
the fixed target :meth:`Fusion.target` = the concatenation of the normalised blocks with fixed
placeholders (zero in centred units); nothing learned sits in the target.

**Compatibility content** (:func:`compatibility_content`): what the AdaSID gate, the near-duplicate
mask and the embedding-based metrics compare, on one source or on the fusion. For one source, the
unit rows of that source, and a zero row for items lacking it (cosine 0 with everything: such pairs
are never treated as near-duplicates or compatible, they are repelled as usual). For ``"fused"``,
``concat_s w_s u_s`` with zero blocks for missing sources, so the cosine is a weighted combination
of the per-source cosines over the sources the two items have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genrec.tokenizer.base import Quantizer, TokenizerConfigError
from genrec.tokenizer.registry import quantizer_class, register_quantizer

FUSION_TYPES = ("concat", "projection")
FUSED = "fused"


def _rows_text(rows: torch.Tensor, limit: int = 10) -> str:
    rows = rows.flatten().tolist()
    return f"{rows[:limit]}{' ...' if len(rows) > limit else ''}"


class SourceLayout:
    """Names and dimensions of the sources inside a packed tensor (see the module docstring).

    Args:
        names: S distinct source names, in packing order.
        dims: S source dimensions (>= 1).
    """

    def __init__(self, names: Sequence[str], dims: Sequence[int]):
        self.names = [str(n) for n in names]
        self.dims = [int(d) for d in dims]
        if not self.names:
            raise ValueError("a source layout needs at least one source")
        if len(self.names) != len(self.dims):
            raise ValueError(f"{len(self.names)} source names but {len(self.dims)} dimensions")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"source names must be distinct, got {self.names}")
        if self.names.count(FUSED):
            raise ValueError(f"'{FUSED}' is reserved (compatibility on the fusion); rename that source")
        if min(self.dims) < 1:
            raise ValueError(f"source dimensions must be >= 1, got {dict(zip(self.names, self.dims, strict=True))}")

    @property
    def num_sources(self) -> int:
        return len(self.names)

    @property
    def source_dim(self) -> int:
        """D, the summed source dimensions (the width of a concatenation)."""
        return sum(self.dims)

    @property
    def packed_dim(self) -> int:
        """D + S: sources, then one presence flag per source."""
        return self.source_dim + self.num_sources

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown source '{name}'; sources: {self.names} (or '{FUSED}')")
        return self.names.index(name)

    def to_config(self) -> list[dict]:
        return [{"name": n, "dim": d} for n, d in zip(self.names, self.dims, strict=True)]

    @classmethod
    def from_config(cls, sources: Sequence[dict]) -> SourceLayout:
        return cls([s["name"] for s in sources], [s["dim"] for s in sources])

    def split(self, x: torch.Tensor, check: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Packed (B, D + S) -> S blocks (B, d_s) and present (B, S) bool.

        With ``check``: the width must be D + S, every value finite, every flag exactly 0 or 1, and a
        present row must not be all zeros (it could not be normalised); errors name the rows.
        """
        if x.ndim != 2 or x.shape[1] != self.packed_dim:
            raise ValueError(f"packed input must be (B, {self.packed_dim}) = sources {dict(zip(self.names, self.dims, strict=True))} "
                             f"+ {self.num_sources} presence flag(s), got shape {tuple(x.shape)}")
        flags = x[:, self.source_dim:]
        if check:
            bad = ~torch.isfinite(x).all(dim=1)
            if bad.any():
                raise ValueError(f"packed input: NaN/inf in {int(bad.sum())} row(s): {_rows_text(torch.nonzero(bad))}")
            not_flag = ((flags != 0) & (flags != 1)).any(dim=1)
            if not_flag.any():
                raise ValueError(f"packed input: presence flags (last {self.num_sources} columns) must be 0 or 1; rows "
                                 f"{_rows_text(torch.nonzero(not_flag))} hold other values (is this a packed input?)")
        present = flags > 0.5
        blocks = list(x[:, : self.source_dim].split(self.dims, dim=1))
        if check:
            for s, block in enumerate(blocks):
                zero = present[:, s] & (block.abs().sum(dim=1) == 0)
                if zero.any():
                    raise ValueError(f"packed input: source '{self.names[s]}' is flagged present but all-zero in rows "
                                     f"{_rows_text(torch.nonzero(zero))}; flag such rows missing (0) instead")
        return blocks, present


def pack_sources(features=None, *, values: Sequence[torch.Tensor] | None = None,
                 present: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Build the packed (N, D + S) float32 input from S sources.

    Either ``features``: objects with ``.values`` (N, d_s) and ``.present`` (N,) bool (e.g.
    :class:`genrec.data.features.ItemFeatures`), or ``values`` + ``present`` lists. Rows of missing
    items are written as zeros whatever ``values`` holds there.
    """
    if features is not None:
        if values is not None or present is not None:
            raise ValueError("pass either features or values + present, not both")
        features = list(features)
        values = [f.values for f in features]
        present = [f.present for f in features]
    if values is None or present is None or len(values) != len(present) or not values:
        raise ValueError("pack_sources needs one present mask per source and at least one source")
    n = values[0].shape[0]
    blocks, flags = [], []
    for s, (v, p) in enumerate(zip(values, present, strict=True)):
        v = torch.as_tensor(v, dtype=torch.float32)
        p = torch.as_tensor(p, dtype=torch.bool)
        if v.ndim != 2 or v.shape[0] != n or p.shape != (n,):
            raise ValueError(f"source {s}: values {tuple(v.shape)} and present {tuple(p.shape)} do not match N={n} rows")
        blocks.append(torch.where(p[:, None], v, torch.zeros((), dtype=torch.float32)))
        flags.append(p.float())
    return torch.cat([*blocks, torch.stack(flags, dim=1)], dim=1)


def compatibility_content(x: torch.Tensor, layout: SourceLayout, source: str = FUSED,
                          weights: Sequence[float] | None = None) -> torch.Tensor:
    """(N, d) content for the gate, the near-duplicate mask and the metrics (see the module docstring).

    Args:
        x: packed (N, D + S).
        source: a source name, or ``"fused"``.
        weights: per-source weights for ``"fused"`` (default 1 each).
    """
    blocks, present = layout.split(x)
    unit = [F.normalize(b.float(), dim=1, eps=1e-12) * present[:, s:s + 1] for s, b in enumerate(blocks)]
    if source != FUSED:
        return unit[layout.index(source)]
    w = [1.0] * layout.num_sources if weights is None else [float(v) for v in weights]
    return torch.cat([wi * u for wi, u in zip(w, unit, strict=True)], dim=1)


def source_weights(layout: SourceLayout, weights) -> list[float]:
    """Weights from None (all 1), a list (one per source) or a mapping name -> weight (missing names: 1)."""
    if weights is None:
        out = [1.0] * layout.num_sources
    elif isinstance(weights, dict):
        unknown = sorted(set(weights) - set(layout.names))
        if unknown:
            raise ValueError(f"fusion weights name unknown source(s) {unknown}; sources: {layout.names}")
        out = [float(weights.get(name, 1.0)) for name in layout.names]
    else:
        out = [float(w) for w in weights]
        if len(out) != layout.num_sources:
            raise ValueError(f"{len(out)} fusion weights for {layout.num_sources} sources {layout.names}")
    if any(not math.isfinite(w) or w <= 0 for w in out):
        raise ValueError(f"fusion weights must be finite and > 0, got {dict(zip(layout.names, out, strict=True))}")
    return out


class Fusion(nn.Module):
    """Base of the fusions: per-source normalisation statistics, the fixed target, config I/O.

    Args:
        sources: ``[{"name": ..., "dim": ...}, ...]`` (a :meth:`SourceLayout.to_config`) or a layout.
        weights: per-source weights (list, or mapping name -> weight; default 1).
    """

    type: str = ""

    def __init__(self, sources, weights=None):
        super().__init__()
        self.layout = sources if isinstance(sources, SourceLayout) else SourceLayout.from_config(sources)
        self.weight_values = source_weights(self.layout, weights)
        self.register_buffer("weights", torch.tensor(self.weight_values, dtype=torch.float32))
        for s, d in enumerate(self.layout.dims):
            self.register_buffer(f"center_{s}", torch.zeros(d))
        self.register_buffer("scale", torch.ones(self.layout.num_sources))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def input_dim(self) -> int:
        """Width of the packed input (D + S)."""
        return self.layout.packed_dim

    @property
    def target_dim(self) -> int:
        """Width of :meth:`target` (D)."""
        return self.layout.source_dim

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def centers(self) -> list[torch.Tensor]:
        return [getattr(self, f"center_{s}") for s in range(self.layout.num_sources)]

    @torch.no_grad()
    def fit_statistics(self, x: torch.Tensor) -> dict:
        """Store each source's centre and scale from the packed catalogue x (present rows only).

        Returns ``{name: {"present": count, "missing": count, "scale": float}}``. A source with no
        present row is an error.
        """
        blocks, present = self.layout.split(x.float())
        report = {}
        for s, (name, block) in enumerate(zip(self.layout.names, blocks, strict=True)):
            rows = present[:, s]
            if not rows.any():
                raise ValueError(f"source '{name}' is missing for every item: nothing to fuse")
            u = F.normalize(block[rows], dim=1, eps=1e-12)
            center = u.mean(dim=0)
            total_variance = float((u - center).pow(2).sum(dim=1).mean())
            self.centers()[s].copy_(center)
            scale = math.sqrt(self.target_dim / (self.layout.num_sources * max(total_variance, 1e-12)))
            self.scale[s] = scale
            report[name] = {"present": int(rows.sum()), "missing": int((~rows).sum()), "scale": scale}
        self.fitted.fill_(True)
        return report

    def _check_fitted(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError(f"{type(self).__name__}: call fit_statistics(x) on the catalogue first (or load a state)")

    def normalized_blocks(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Packed x -> S blocks ``(normalize(v) - c_s) * scale_s`` (meaningless on missing rows) and present (B, S)."""
        self._check_fitted()
        blocks, present = self.layout.split(x.float())
        centers = self.centers()
        out = [(F.normalize(b, dim=1, eps=1e-12) - centers[s]) * self.scale[s] for s, b in enumerate(blocks)]
        return out, present

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed reconstruction target (B, D): ``concat_s w_s b_s``, missing blocks = 0 (the catalogue mean)."""
        blocks, present = self.normalized_blocks(x)
        return torch.cat([self.weights[s] * b * present[:, s:s + 1] for s, b in enumerate(blocks)], dim=1)

    def get_config(self) -> dict:
        return {"type": self.type, "sources": self.layout.to_config(), "weights": list(self.weight_values)}


class ConcatFusion(Fusion):
    """Concatenation of the normalised, weighted sources; missing rows take a per-source placeholder.

    Args:
        sources, weights: see :class:`Fusion`.
        learned_placeholder: placeholders are parameters trained with the tokenizer (True) or fixed at
            the catalogue mean of the present rows (False; what untrained quantisers use).
    """

    type = "concat"

    def __init__(self, sources, weights=None, learned_placeholder: bool = True):
        super().__init__(sources, weights)
        self.learned_placeholder = bool(learned_placeholder)
        init = [torch.zeros(d) for d in self.layout.dims]  # the catalogue mean, in centred units
        if self.learned_placeholder:
            self.placeholders = nn.ParameterList([nn.Parameter(p) for p in init])
        else:
            for s, p in enumerate(init):
                self.register_buffer(f"placeholder_{s}", p)

    @property
    def out_dim(self) -> int:
        return self.layout.source_dim

    def placeholder(self, s: int) -> torch.Tensor:
        return self.placeholders[s] if self.learned_placeholder else getattr(self, f"placeholder_{s}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed (B, D + S) -> (B, D)."""
        blocks, present = self.normalized_blocks(x)
        return torch.cat([self.weights[s] * torch.where(present[:, s:s + 1], b, self.placeholder(s))
                          for s, b in enumerate(blocks)], dim=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "learned_placeholder": self.learned_placeholder}


class ProjectionFusion(Fusion):
    """Per-source learned linear projection into a shared space, weighted mean over sources.

    Args:
        sources, weights: see :class:`Fusion`.
        dim: the shared dimension.
    """

    type = "projection"
    learned_placeholder = True

    def __init__(self, sources, weights=None, dim: int = 128):
        super().__init__(sources, weights)
        self.dim = int(dim)
        if self.dim < 1:
            raise ValueError(f"projection dim must be >= 1, got {dim}")
        self.projections = nn.ModuleList([nn.Linear(d, self.dim) for d in self.layout.dims])
        self.placeholders = nn.ParameterList([nn.Parameter(p.bias.detach().clone()) for p in self.projections])

    @property
    def out_dim(self) -> int:
        return self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed (B, D + S) -> (B, dim)."""
        blocks, present = self.normalized_blocks(x)
        total = 0
        for s, (b, proj) in enumerate(zip(blocks, self.projections, strict=True)):
            total = total + self.weights[s] * torch.where(present[:, s:s + 1], proj(b), self.placeholders[s])
        return total / self.weights.sum()

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim}


def build_fusion(config: dict) -> Fusion:
    """A fusion from ``{"type": "concat" | "projection", "sources": [{name, dim}, ...], "weights": ...,
    "learned_placeholder": bool (concat), "dim": int (projection)}``; unknown keys are errors."""
    config = dict(config)
    kind = config.pop("type", "concat")
    if "sources" not in config:
        raise ValueError("fusion config needs 'sources': [{name, dim}, ...]")
    allowed = {"concat": {"sources", "weights", "learned_placeholder"}, "projection": {"sources", "weights", "dim"}}
    if kind not in allowed:
        raise ValueError(f"unknown fusion type '{kind}'; choose one of {list(FUSION_TYPES)}")
    unknown = sorted(set(config) - allowed[kind])
    if unknown:
        raise ValueError(f"fusion type '{kind}': unknown key(s) {unknown}; valid: {sorted(allowed[kind])}")
    cls = ConcatFusion if kind == "concat" else ProjectionFusion
    return cls(**config)



def fusion_config(section: dict, layout: SourceLayout) -> dict:
    """The fusion config for the sources of ``layout`` from a config's ``fusion`` section, checked.

    ``section`` may set ``type`` (default ``concat``), ``weights``, ``dim`` and ``learned_placeholder``;
    the sources come from ``layout``. The result is what :func:`build_fusion`, ``RQVAE(fusion=...)``
    and :class:`FusedQuantizer` take. Raises :class:`~genrec.tokenizer.base.TokenizerConfigError`
    (``fusion: ...``) for unknown keys or a fusion that cannot be built.
    """
    allowed = {"type", "weights", "dim", "learned_placeholder"}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise TokenizerConfigError(f"fusion: unknown key(s) {unknown}; valid: {sorted(allowed)}")
    config = {"type": "concat", **section, "sources": layout.to_config()}
    try:
        with torch.random.fork_rng(devices=[]):  # a check only: leave the global RNG alone
            build_fusion(config)
    except (ValueError, TypeError) as err:
        raise TokenizerConfigError(f"fusion: {err}") from None
    return config

@register_quantizer("fused")
class FusedQuantizer(Quantizer):
    """Any quantiser behind a *fixed* fusion: ``encode(x) = quantizer.encode(fusion(x))`` on packed x.

    For quantisers that do not learn a fusion themselves (``random``, ``rq_kmeans``). ``fit`` stores
    the fusion's normalisation statistics, then fits the inner quantiser on the fused catalogue. The
    fusion must have no learned parameters (``concat`` with ``learned_placeholder=False``): nothing
    would train them. RQ-VAE learns its fusion itself (``RQVAE(..., fusion=config)``).

    The whole catalogue is fused before the inner ``encode`` (row-dependent quantisers such as random
    IDs need every row at once): memory is one extra (N, D) tensor.

    Args:
        fusion: a fusion config (see :func:`build_fusion`).
        quantizer: the inner quantiser, or its ``get_config()`` dict.
    """

    # Not built from a config's fields (it wraps a quantiser that was); fit passes no training settings,
    # so it counts as untrained, like the quantisers it is meant for.
    trainable = False
    takes_input_dim = False
    learns_fusion = False  # its fusion is fixed
    options = ()

    @classmethod
    def from_options(cls, **fields) -> FusedQuantizer:
        raise ValueError("method 'fused' is not built from options: it wraps another method's quantiser "
                         "(give that method and a features section)")

    def __init__(self, fusion: dict, quantizer):
        self.fusion = build_fusion(fusion)
        if any(True for _ in self.fusion.parameters()):
            raise ValueError(f"fusion '{self.fusion.type}' has learned parameters, which a wrapped quantiser cannot train; "
                             "use type: concat with learned_placeholder: false, or a trainable quantiser (rq_vae) with fusion=...")
        if isinstance(quantizer, dict):
            quantizer = quantizer_class(quantizer.get("method")).from_config(quantizer)
        self.inner = quantizer
        self.codebook_sizes = tuple(quantizer.codebook_sizes)

    @property
    def input_dim(self) -> int:
        return self.fusion.input_dim

    @torch.no_grad()
    def fuse(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """Packed (N, D + S) -> fused (N, D), ``batch_size`` rows at a time."""
        chunks = [self.fusion(chunk) for chunk in x.float().split(batch_size)]
        return torch.cat(chunks) if chunks else x.new_zeros(0, self.fusion.out_dim)

    def fit(self, x: torch.Tensor, regularizers=None, **kwargs) -> dict:
        """Fusion statistics, then ``quantizer.fit(fused x, ...)``; returns the inner history plus ``fusion`` (per-source counts)."""
        report = self.fusion.fit_statistics(x)
        history = self.inner.fit(self.fuse(x), regularizers, **kwargs) if regularizers else self.inner.fit(self.fuse(x), **kwargs)
        return {**(history or {}), "fusion": report}

    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        return self.inner.encode(self.fuse(x, batch_size), batch_size=batch_size)

    def __getattr__(self, name):
        # reconstruction_error exactly when the inner quantiser has one (the recipe checks hasattr).
        if name == "reconstruction_error" and "inner" in self.__dict__ and hasattr(self.inner, name):
            inner = self.inner
            return lambda x, batch_size=8192: inner.reconstruction_error(self.fuse(x, batch_size), batch_size=batch_size)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- serialisation ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"method": "fused", "fusion": self.fusion.get_config(), "quantizer": self.inner.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> FusedQuantizer:
        unknown = sorted(set(config) - {"method", "fusion", "quantizer"})
        if unknown:
            raise ValueError(f"fused quantiser config: unknown key(s) {unknown}")
        return cls(config["fusion"], config["quantizer"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``fusion.<name>`` (normalisation statistics) and ``quantizer.<name>`` (the inner quantiser's tensors)."""
        return {**{f"fusion.{k}": v for k, v in self.fusion.state_dict().items()},
                **{f"quantizer.{k}": v for k, v in self.inner.state_dict().items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        fusion = {k[len("fusion."):]: v for k, v in state.items() if k.startswith("fusion.")}
        inner = {k[len("quantizer."):]: v for k, v in state.items() if k.startswith("quantizer.")}
        other = sorted(set(state) - {f"fusion.{k}" for k in fusion} - {f"quantizer.{k}" for k in inner})
        if other:
            raise ValueError(f"fused quantiser state: unexpected key(s) {other[:5]} (expected fusion.* and quantizer.*)")
        self.fusion.load_state_dict(fusion)
        self.inner.load_state_dict(inner)


__all__ = ["FUSED", "FUSION_TYPES", "ConcatFusion", "FusedQuantizer", "Fusion", "ProjectionFusion", "SourceLayout",
           "build_fusion", "compatibility_content", "fusion_config", "pack_sources", "source_weights"]
