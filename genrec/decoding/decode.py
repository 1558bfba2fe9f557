"""One entry for ranking the catalogue with a SID model, and the decoding settings it takes.

:func:`search` is what evaluation, the recommender pipeline and the benchmarks call: it aligns the
prompts the way the model reads them (decoder-only models: left-aligned), then picks the decoder
from the model's architecture and the settings (``search="beam"``: trie-constrained beam search;
``"exact"``: the model's exact top k, :func:`~genrec.decoding.exact_top_k`).

:class:`GenerationSettings` holds every decoding default (beam width, normalisation, batch size,
search, exact search's budget) in one place: the recipes' ``eval`` section and a bundle's
``generation`` entry are this dataclass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch

from genrec.decoding.beam_search import ExcludeItems, constrained_beam_search, constrained_beam_search_causal
from genrec.decoding.exact import exact_top_k
from genrec.decoding.trie import PrefixTrie

SEARCHES = ("beam", "exact")
NORMALIZATIONS = ("vocab", "level")
COLD_METHODS = ("off", "prefix", "content", "fusion")
PLACEMENTS = ("score", "tail")
# Decoder-only search repeats each prompt's KV cache per beam: small batches rank faster (BENCHMARKS.md).
CAUSAL_BATCH_SIZE = 32


@dataclass
class ColdStartSettings:
    """How cold items (no training interactions) join the top-K lists (:mod:`genrec.decoding.cold_start`).

    Attributes:
        method: ``"off"``, ``"prefix"`` (TIGER: matched on their semantic codes), ``"content"`` (drafted
            by content similarity, verified by the model; needs the items' content embeddings) or
            ``"fusion"`` (LIGER-like hybrid ranking: the model's list and a content ranking of the whole
            catalogue, warm and cold items, merged by reciprocal-rank fusion; changes warm users' lists too).
        epsilon: the largest share of cold items in a top-K list (TIGER's epsilon): ``floor(epsilon * K)``
            (0 turns every method off, ``"fusion"`` included: the plain search's lists come back unchanged).
        num_beams: ``"prefix"``: cold semantic prefixes kept per user by the beam search over them.
        drafts: ``"content"``: cold items drafted per user by content similarity; ``"fusion"``: the length of
            the content ranking (the user's history and excluded items left out).
        history_decay: ``"content"`` / ``"fusion"``: recency weighting of the user's content vector, a history
            item ``a`` places before the last weighs ``history_decay ** a`` (1: the mean of the history,
            Semantic-KNN's standard form; 0: the last item alone).
        fusion_weight: ``"fusion"``: the content ranking's weight against the model's list (an item at rank r,
            from 0, of a list gets weight / (:data:`~genrec.decoding.cold_start.RANK_CONSTANT` + 1 + r);
            the model's list has weight 1); the list's scores are these fused values.
        cold_boost: ``"fusion"``: a cold item's content weight is ``fusion_weight * cold_boost`` (cold items have
            no place in the model's list, so at 1 they compete on content alone).
        content_weight: ``"content"``: a draft's score is its semantic-prefix log-probability plus
            ``content_weight`` x its cosine to the user's history (0: the model's score alone).
        score_offset: added to every cold candidate's score before it competes with the plain list (log-probability
            units; negative = cold items enter only when they clearly beat the list's tail). Calibrate it on
            validation users, whose targets are never cold: ``benchmarks/cold_start.py`` picks the largest offset
            whose validation NDCG@10 loss stays within a budget.
        placement: where an admitted cold item goes: ``"score"`` (its rank by score among the list) or ``"tail"``
            (after the list's other items: admitted by score, it takes the last places, so a warm user loses
            at most the lowest-ranked items).
    """

    method: str = "off"
    epsilon: float = 0.1
    num_beams: int = 20
    drafts: int = 20
    content_weight: float = 0.0
    score_offset: float = 0.0
    placement: str = "score"
    history_decay: float = 1.0
    fusion_weight: float = 1.0
    cold_boost: float = 1.0

    def __post_init__(self):
        if self.method not in COLD_METHODS:
            raise ValueError(f"cold_start.method must be one of {COLD_METHODS}, got {self.method!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"cold_start.epsilon must be in [0, 1], got {self.epsilon!r}")
        if self.num_beams < 1 or self.drafts < 1:
            raise ValueError(f"cold_start.num_beams and cold_start.drafts must be >= 1, got {self.num_beams} and {self.drafts}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"cold_start.placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if not 0.0 <= self.history_decay <= 1.0:
            raise ValueError(f"cold_start.history_decay must be in [0, 1], got {self.history_decay!r}")
        if not (self.fusion_weight >= 0.0 and self.cold_boost >= 0.0):
            raise ValueError(f"cold_start.fusion_weight and cold_start.cold_boost must be >= 0, "
                             f"got {self.fusion_weight!r} and {self.cold_boost!r}")

    @classmethod
    def from_dict(cls, data: dict, base: ColdStartSettings | None = None) -> ColdStartSettings:
        """Settings from a dict (a config, a bundle, ``recommend(cold_start={...})``) over ``base`` (default: the defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"cold_start: unknown setting(s) {unknown}; the settings are {sorted(known)}")
        return cls(**{**asdict(base or cls()), **data})

    def max_cold(self, top_k: int) -> int:
        """Cold items allowed in a top-``top_k`` list (0 when the method is off)."""
        return 0 if self.method == "off" else math.floor(self.epsilon * top_k + 1e-9)


@dataclass
class GenerationSettings:
    """How a SID model ranks the catalogue (``eval`` in a recipe config, ``generation`` in a bundle).

    Attributes:
        num_beams: beams kept per user at every SID level; at least the largest K asked for is used.
        normalization: ``"vocab"`` (softmax over the whole vocabulary, as in training) or ``"level"``.
        batch_size: users decoded together (decoder-only recommenders built without settings use
            :data:`CAUSAL_BATCH_SIZE`).
        search: ``"beam"`` (beam search with ``num_beams``) or ``"exact"`` (the model's exact top k,
            frontier widened from ``num_beams`` up to ``max_width``).
        max_width: exact search's node budget: the widest frontier per level.
        cold_start: how cold items join the lists (:class:`ColdStartSettings`; off by default).
    """

    num_beams: int = 20
    normalization: str = "vocab"
    batch_size: int = 256
    search: str = "beam"
    max_width: int = 512
    cold_start: ColdStartSettings = field(default_factory=ColdStartSettings)

    def __post_init__(self):
        if isinstance(self.cold_start, dict):  # read from a bundle's or a run's JSON
            self.cold_start = ColdStartSettings.from_dict(self.cold_start)
        elif not isinstance(self.cold_start, ColdStartSettings):
            raise ValueError(f"cold_start must be ColdStartSettings or a dict, got {type(self.cold_start).__name__}")
        if self.num_beams < 1 or self.batch_size < 1:
            raise ValueError(f"num_beams and batch_size must be >= 1, got {self.num_beams} and {self.batch_size}")
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {self.search!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.max_width < self.num_beams:
            raise ValueError(f"max_width ({self.max_width}) must be >= num_beams ({self.num_beams})")

    @classmethod
    def for_model(cls, model) -> GenerationSettings:
        """The defaults for ``model``: :data:`CAUSAL_BATCH_SIZE` users per batch for a decoder-only model."""
        return cls() if model.config.is_encoder_decoder else cls(batch_size=CAUSAL_BATCH_SIZE)


@dataclass
class SearchResult:
    """Top items per user, best first.

    Attributes:
        items: (B, top_k) item indices (-1 where fewer items are reachable).
        scores: (B, top_k) log P(item | history) (-inf where ``items`` is -1).
        certified: exact search only: (B,) bool, whether the user's list is certified exact.
        expanded: exact search only: (B,) prefixes expanded for the user.
    """

    items: torch.Tensor
    scores: torch.Tensor
    certified: torch.Tensor | None = None
    expanded: torch.Tensor | None = None


def left_align(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every row's real tokens (``attention_mask == 1``, one contiguous run) to the right end.

    Padding ids are kept as they are (moved to the left), so any pad id works. Left-padded input
    comes back unchanged.
    """
    width = input_ids.shape[1]
    lengths = attention_mask.long().sum(dim=1)
    first = attention_mask.long().argmax(dim=1)  # start of each row's run (0 for an empty row)
    shift = width - lengths - first  # how far right each row moves
    source = (torch.arange(width, device=input_ids.device)[None, :] - shift[:, None]) % width
    return input_ids.gather(1, source), attention_mask.gather(1, source)


@torch.no_grad()
def search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, trie: PrefixTrie, *, top_k: int,
           settings: GenerationSettings | None = None, exclude_items: ExcludeItems = None, cold_catalogue=None,
           history_items: torch.Tensor | None = None, vocab=None) -> SearchResult:
    """The top ``top_k`` catalogue items of each prompt row, decoded as ``settings`` say.

    Args:
        model: an encoder-decoder or decoder-only SID model (possibly peft-wrapped), on the device of the inputs.
        input_ids, attention_mask: (B, T) prompt rows, padded on either side (a decoder-only model's
            rows are left-aligned here).
        trie: the catalogue's :class:`PrefixTrie` (on the model's device).
        top_k: items per row; beam search uses ``max(settings.num_beams, top_k)`` beams.
        settings: default :class:`GenerationSettings` ().
        exclude_items: per-row item indices never returned.
        cold_catalogue: the catalogue's cold items (:class:`~genrec.decoding.cold_start.ColdCatalogue`): with
            ``settings.cold_start.method`` not ``"off"``, cold items are merged into the lists
            (:func:`~genrec.decoding.cold_start.add_cold_start_items`); None = plain search.
        history_items: (B, T) history item indices (-1 = padding): the ``"content"`` cold-start method's input.
        vocab: the token layout (``normalization="level"`` when the ``"content"`` method scores drafts).
    """
    settings = settings or GenerationSettings()
    found = _search(model, input_ids, attention_mask, trie, top_k, settings, exclude_items)
    if cold_catalogue is None or settings.cold_start.max_cold(top_k) == 0:
        return found
    from genrec.decoding.cold_start import add_cold_start_items  # it runs searches itself (this module)

    return add_cold_start_items(model, input_ids, attention_mask, found, cold_catalogue, settings, top_k=top_k,
                                history_items=history_items, exclude_items=exclude_items, vocab=vocab)


def _search(model, input_ids, attention_mask, trie, top_k, settings, exclude_items) -> SearchResult:
    if not model.config.is_encoder_decoder:
        input_ids, attention_mask = left_align(input_ids, attention_mask)
    num_beams = max(settings.num_beams, top_k)
    if settings.search == "exact":
        found = exact_top_k(model, input_ids, attention_mask, trie, top_k, start_width=num_beams,
                            max_width=max(settings.max_width, num_beams), exclude_items=exclude_items,
                            normalization=settings.normalization)
        return SearchResult(found.items, found.scores, found.certified, found.expanded)
    beam = constrained_beam_search if model.config.is_encoder_decoder else constrained_beam_search_causal
    items, scores = beam(model, input_ids, attention_mask, trie, num_beams=num_beams, top_k=top_k,
                         exclude_items=exclude_items, normalization=settings.normalization)
    return SearchResult(items, scores)
