"""``GenerativeRecommender``: a trained recommender you load and call, shared like a Hugging Face model.

The pipeline bundles everything needed to turn a raw history of item ids into recommendations: the
SID tokenizer (item <-> Semantic ID table), the trained model, the token layout (a
:class:`~genrec.models.TokenSpace`: where the SID, user, eos and pad ids are), how the model input was
built (for LoRA runs: the item-title tokens and prompt mixed into the history) and the decoding
settings. ``recommend`` maps item ids to input tokens with the same functions the training recipe uses
(:func:`genrec.data.build_seq2seq_dataset` with the recipe's arguments, padded and aligned as
:func:`genrec.eval.evaluate.evaluate_generative` does), decodes with exact trie-constrained beam search
(every recommendation is a real catalogue item) and maps the leaves back to item ids.

    from genrec.pipeline import GenerativeRecommender

    rec = GenerativeRecommender.from_pretrained("runs/beauty/recommender")  # bundle, run folder or Hub repo id
    out = rec.recommend([["B004756YJA", "B004ZT0SSG"], ["7806397051"]], k=10)
    out[0].item_ids, out[0].scores                                            # best first
    rec.save_pretrained("runs/beauty/recommender"); rec.push_to_hub("you/beauty-tiger")

A saved recommender (a *bundle*) is a folder or Hub model repo holding JSON and safetensors only; its files are
listed in :mod:`genrec.bundle`. Loading never unpickles.

:meth:`GenerativeRecommender.from_pretrained` also reads a training run folder written by
``recipes/train_genrec.py`` (opened with :func:`genrec.runs.open_run`; LoRA runs: ``text_tokenizer/`` and the
base checkpoint named by the adapter); the tokenizer then comes from the run's ``tokenizer_dir`` or the ``tokenizer=`` argument, and
the popular items, the user list and (LoRA) the item texts are computed from the run's dataset.

Model types (``model_type`` in the bundle config) are the backends of :mod:`genrec.models.registry`: ``"t5"``
(encoder-decoder, TIGER), ``"causal"`` (decoder-only causal LM on the same prompt) and ``"lora"`` (a
pretrained seq2seq or decoder-only LM fine-tuned with LoRA, its text tokenizer extended with the SID
tokens). Every type decodes through :func:`genrec.decoding.search`.

User tokens (TIGER's hashed user ids, when the token space has them): a user id seen in training gets
its training bucket (``training index % num_user_tokens``, exactly as in evaluation); any other user id
gets ``crc32(user_id) % num_user_tokens`` (stable across runs and machines); no user id gets bucket 0.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from genrec.bundle import (
    BUNDLE_ENTRIES,
    CARD_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    ITEM_EMBEDDINGS_FILE,
    ITEM_TEXT_FILE,
    LORA_REQUIRED_FILES,
    MODEL_DIR,
    POPULAR_FILE,
    REQUIRED_FILES,
    TEXT_TOKENIZER_DIR,
    TOKENIZER_DIR,
    USERS_FILE,
    WARM_ITEMS_FILE,
    PopularItems,
    build_model_card,
    check_saved_weights,
    download_bundle,
    load_text_tokenizer,
    read_item_embeddings,
    read_json,
    read_popular_items,
    read_user_ids,
    read_warm_items,
    write_item_embeddings,
    write_json,
)
from genrec.data import MAX_HISTORY, Examples
from genrec.decoding import SEARCHES, ColdCatalogue, ColdStartSettings, GenerationSettings, PrefixTrie, search
from genrec.inputs import TextInputs, encode_histories
from genrec.models.lora import merge_lora
from genrec.models.registry import (
    architecture,
    get_backend,
    is_peft,
    load_saved_model,
    model_type_of,
)
from genrec.models.t5 import prompt_eos_id
from genrec.runs import open_run
from genrec.tokenizer import SIDTokenizer
from genrec.tokenizer.hub import refuse_pickles
from genrec.tokenizer.io import replace_dir
from genrec.vocab import TokenSpace

logger = logging.getLogger(__name__)

EmptyHistory = Literal["error", "popular"]


class UnknownItemError(ValueError):
    """A history holds item ids that are not in the catalogue (raised with ``strict=True``).

    Attributes:
        request_index: position of the request in the ``histories`` passed to ``recommend``.
        user_id: the request's user id (None when not given).
        unknown_item_ids: the ids not in the catalogue, in history order.
    """

    def __init__(self, message: str, request_index: int, user_id: str | None, unknown_item_ids: list[str]):
        super().__init__(message)
        self.request_index = request_index
        self.user_id = user_id
        self.unknown_item_ids = unknown_item_ids


class EmptyHistoryError(ValueError):
    """A history is empty, or holds only unknown items, and ``empty_history="error"``.

    Attributes:
        request_index: position of the request in the ``histories`` passed to ``recommend``.
        user_id: the request's user id (None when not given).
        reason: the message without its ``request i (user ...)`` prefix.
    """

    def __init__(self, request_index: int, user_id: str | None, reason: str):
        super().__init__(f"request {request_index}{_who(user_id)}: {reason}")
        self.request_index = request_index
        self.user_id = user_id
        self.reason = reason


@dataclass
class Recommendation:
    """The top items for one history, best first.

    Attributes:
        item_ids: up to ``k`` catalogue item ids. Fewer when fewer are reachable, e.g. when
            ``exclude_seen`` removed history items among the beams' leaves (raise ``num_beams``).
        scores: same length; ``source="model"``: the sum of the SID tokens' log-probabilities,
            ``log P(item | history)``; ``source="popular"``: ``log(count / total)`` of the item in the
            training data.
        user_id: the request's user id, if given.
        source: ``"model"``, or ``"popular"`` for the empty-history fallback.
        unknown_item_ids: history ids skipped because they are not in the catalogue.
    """

    item_ids: list[str]
    scores: list[float]
    user_id: str | None = None
    source: str = "model"
    unknown_item_ids: list[str] = field(default_factory=list)

    @property
    def num_unknown(self) -> int:
        return len(self.unknown_item_ids)

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve_device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r} is not a device name (cpu, cuda, cuda:1, mps, auto): {e}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this machine has no CUDA device (torch.cuda.is_available() is False); "
                         "use cpu or auto")
    return resolved


class GenerativeRecommender:
    """A trained generative recommender on Semantic IDs: raw item-id histories in, item ids and scores out.

    Build one with :meth:`from_pretrained` (bundle folder, training run folder or Hub repo id), or
    from objects in memory. Save it with :meth:`save_pretrained`, share it with :meth:`push_to_hub`.

    Args:
        model: a Hugging Face model on the SID tokens: ``T5ForConditionalGeneration`` or a causal LM on a
            :meth:`~genrec.vocab.TokenSpace.sid_layout`, or (``model_type="lora"``) a pretrained LM with LoRA (a peft model, or merged).
        tokenizer: the :class:`SIDTokenizer` whose SID table the model was trained on (row i = item index i).
        vocab: where the model's SID / user / eos / pad token ids are: a :class:`~genrec.vocab.TokenSpace`
            (t5/causal models: :meth:`~genrec.vocab.TokenSpace.sid_layout`); level sizes must equal the tokenizer's.
        max_history: the last this many known history items are fed to the model (training's cut).
        generation: decoding settings (default :class:`GenerationSettings`).
        popular_items: the empty-history fallback (None: ``empty_history="popular"`` is an error).
        user_ids: training users in training order (their user-token buckets); None: all users hashed.
        metrics: evaluation metrics to record (e.g. ``{"validation": {...}, "test": {...}}``).
        evaluation: how the metrics were measured (num_beams, ks, protocol), recorded in the card.
        training_data: free-text description of the training data.
        model_type: a key of :data:`MODEL_BACKENDS`; default: ``"lora"`` for a peft model or when a
            ``text_tokenizer`` is given, else ``"t5"`` / ``"causal"`` from the model's config.
        text_inputs: LoRA: the text mixed into the input (item titles, prompt), as in training; None = SIDs only.
        text_tokenizer: LoRA: the base model's text tokenizer extended with the SID (and user) tokens
            (required for ``"lora"``: it is saved with the bundle).
        base_model: LoRA: name or path of the pretrained checkpoint (recorded in the bundle and its card).
        warm_item_ids: the items with training interactions; every other item (held out of training, or
            added later with :meth:`add_items`) is cold, for cold-start decoding (``generation.cold_start``).
            None: unknown (cold-start decoding unavailable).
        item_embeddings: ``(N, d)`` content vectors of the catalogue (row = item index; the tokenizer's inputs,
            e.g. :meth:`text_item_embeddings`), for the ``"content"`` cold-start method: cold items are drafted
            by their cosine to the history's mean vector. :meth:`add_items` appends the new items' vectors.
            None: the ``"content"`` method is unavailable.
        device: where to run ("cpu", "cuda", "auto"); the model is moved there. None keeps the model where it is
            (:meth:`from_pretrained` defaults to "auto": CUDA when available, else CPU).
    """

    def __init__(self, model, tokenizer: SIDTokenizer, vocab: TokenSpace, *, max_history: int = MAX_HISTORY,
                 generation: GenerationSettings | None = None, popular_items: PopularItems | None = None,
                 user_ids: Sequence[str] | None = None, metrics: dict | None = None, evaluation: dict | None = None,
                 training_data: str | None = None, model_type: str | None = None, text_inputs: TextInputs | None = None,
                 text_tokenizer=None, base_model: str | None = None, warm_item_ids: Sequence[str] | None = None,
                 item_embeddings: torch.Tensor | None = None, device=None):
        space = vocab
        if not isinstance(space, TokenSpace):
            raise TypeError(f"vocab must be a TokenSpace (genrec.vocab), got {type(vocab).__name__}")
        if tuple(tokenizer.codebook_sizes) != tuple(space.codebook_sizes):
            raise ValueError(f"the tokenizer's SID levels {tuple(tokenizer.codebook_sizes)} differ from the vocabulary's "
                             f"{tuple(space.codebook_sizes)}: the model was trained on another tokenizer")
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}")
        if model_type is None:
            model_type = "lora" if is_peft(model) or text_tokenizer is not None else model_type_of(model)
        self.model_type = model_type
        self.backend = get_backend(self.model_type, "GenerativeRecommender")
        if model_type == "lora" and text_tokenizer is None:
            raise ValueError("a LoRA recommender needs its text tokenizer (the run's text_tokenizer/ folder: the base "
                             "model's tokenizer extended with the SID tokens)")
        if model_type != "lora" and not space.is_sid_layout:
            raise ValueError(f"model_type {model_type!r} uses the SID token layout (TokenSpace.sid_layout), but the token space "
                             f"differs from it ({space}); a pretrained LM with its own text vocabulary is model_type='lora'")
        vocab_size = getattr(model.config, "vocab_size", None)
        if vocab_size is not None and vocab_size < space.size:
            what = f"the SID vocabulary's {space.size}" if model_type != "lora" else f"the {space.size} its token space needs"
            raise ValueError(f"the model's vocabulary has {vocab_size} tokens, fewer than {what}")
        if text_inputs is not None and text_inputs.item_text_tokens is not None and len(text_inputs.item_text_tokens) != len(tokenizer):
            raise ValueError(f"text_inputs has item text tokens for {len(text_inputs.item_text_tokens)} items, "
                             f"the tokenizer has {len(tokenizer)}")
        self.tokenizer = tokenizer
        self.space = space
        self.text_inputs = text_inputs
        self.text_tokenizer = text_tokenizer
        self.base_model = base_model
        self.max_history = int(max_history)
        self.generation = generation or GenerationSettings.for_model(model)
        self.popular_items = popular_items
        self.user_ids = list(user_ids) if user_ids is not None else None
        self.metrics = metrics
        self.evaluation = evaluation
        self.training_data = training_data
        self._user_index = {u: i for i, u in enumerate(self.user_ids)} if self.user_ids is not None else {}
        self.warm_item_ids = list(warm_item_ids) if warm_item_ids is not None else None
        if self.warm_item_ids is not None:
            unknown = [item for item in self.warm_item_ids if item not in tokenizer]
            if unknown:
                raise ValueError(f"{len(unknown)} warm item id(s) not in the tokenizer, e.g. {unknown[:5]}")
        self.item_embeddings = None
        if item_embeddings is not None:
            item_embeddings = torch.as_tensor(item_embeddings).detach().to("cpu", torch.float32)
            if item_embeddings.ndim != 2 or len(item_embeddings) != len(tokenizer):
                raise ValueError(f"item_embeddings must be ({len(tokenizer)}, d): one row per catalogue item, "
                                 f"got shape {tuple(item_embeddings.shape)}")
            if not torch.isfinite(item_embeddings).all():
                raise ValueError("item_embeddings hold non-finite values")
            self.item_embeddings = item_embeddings
        self.model = model.eval()
        self._index_catalogue(self.device if device is None else device)

    def _index_catalogue(self, device) -> None:
        """(Re)build the item tokens, the decoding trie and the cold items from the tokenizer's table."""
        self.item_ids = list(self.tokenizer.item_ids)
        self._item_index = {item: i for i, item in enumerate(self.item_ids)}
        self.item_tokens = self.space.codes_to_tokens(self.tokenizer.sids)  # (N, D) token ids, row = item index
        self._cpu_trie = PrefixTrie.from_item_tokens(self.item_tokens, level_ranges=self.space.level_ranges)
        self._cold_catalogue = None
        if self.warm_item_ids is not None and self.space.depth >= 2:
            warm = set(self.warm_item_ids)
            cold = torch.tensor([item not in warm for item in self.item_ids], dtype=torch.bool)
            self._cold_catalogue = ColdCatalogue(self.item_tokens, cold, self.space.level_ranges,
                                                 item_embeddings=self.item_embeddings)
        self.to(device)

    @property
    def cold_item_ids(self) -> list[str] | None:
        """Items without training interactions (cold-start decoding matches them); None when unknown."""
        if self.warm_item_ids is None:
            return None
        warm = set(self.warm_item_ids)
        return [item for item in self.item_ids if item not in warm]

    def add_items(self, item_ids: Sequence[str], item_embeddings: torch.Tensor) -> list[tuple[int, ...]]:
        """Add new items to the catalogue without retraining; returns their SIDs.

        The tokenizer encodes them (:meth:`SIDTokenizer.encode` with ``add_to_table=True``: embeddings
        made like the catalogue's, same model and text template). New items are cold: plain decoding
        practically never returns them; ``generation.cold_start`` (or ``recommend(cold_start=...)``)
        with ``method="prefix"`` matches them on their semantic codes, ``method="content"`` drafts them by
        content (the new vectors join :attr:`item_embeddings` when the recommender has them).
        """
        if self.text_inputs is not None and self.text_inputs.item_text_tokens is not None:
            raise ValueError("this recommender reads item text in its inputs (LoRA item_text_template): items cannot be "
                             "added without their text tokens")
        item_ids = list(item_ids)
        vectors = torch.as_tensor(item_embeddings).detach().to("cpu", torch.float32)
        if self.item_embeddings is not None and vectors.shape[1:] != self.item_embeddings.shape[1:]:
            raise ValueError(f"the new items' embeddings are {tuple(vectors.shape)}, the catalogue's content vectors "
                             f"{tuple(self.item_embeddings.shape)}: they must be made alike")
        trial = self.tokenizer.encode(item_embeddings, item_ids=item_ids)  # nothing changes unless they fit the model
        if tuple(trial.codebook_sizes) != tuple(self.space.codebook_sizes):
            raise ValueError(f"the new items need SID levels {tuple(trial.codebook_sizes)}, the model was trained on "
                             f"{tuple(self.space.codebook_sizes)} (the dedup level is full for their semantic codes): "
                             "they cannot be added without retraining")
        encoded = self.tokenizer.encode(item_embeddings, item_ids=item_ids, add_to_table=True)
        if self.item_embeddings is not None:
            self.item_embeddings = torch.cat([self.item_embeddings, vectors])
        self._index_catalogue(self.device)
        return [tuple(int(c) for c in sid) for sid in encoded.sids.tolist()]

    # ---- properties -------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab(self) -> TokenSpace | None:
        """The token layout of a t5/causal model (:meth:`TokenSpace.sid_layout`); None for LoRA (see :attr:`space`)."""
        return None if self.model_type == "lora" else self.space

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def architecture(self) -> str:
        """``"seq2seq"`` (encoder-decoder) or ``"causal"`` (decoder-only): how inputs are aligned and decoded."""
        return architecture(self.model)

    def to(self, device) -> GenerativeRecommender:
        """Move the model (and the decoding trie) to ``device`` ("cpu", "cuda", "cuda:1"; None = auto)."""
        device = _resolve_device(device)
        self.model.to(device)
        self.trie = self._cpu_trie.to(device)
        if self._cold_catalogue is not None:
            self._cold_catalogue.to(device)
        return self

    def __repr__(self) -> str:
        return (f"GenerativeRecommender(model_type={self.model_type!r}, items={self.num_items}, "
                f"sid_levels={list(self.space.codebook_sizes)}, num_beams={self.generation.num_beams}, device={self.device})")

    @property
    def config(self) -> dict:
        """Everything ``genrec_config.json`` holds."""
        from genrec import __version__

        base_config = self.model.config
        return {
            "format_version": FORMAT_VERSION,
            "library_name": "genrec",
            "genrec_version": __version__,
            "model_type": self.model_type,
            "architecture": (getattr(base_config, "architectures", None) or [type(self.model).__name__])[0],
            # format 1 keeps the SID layout's defining fields beside the full layout (t5/causal; checked on load)
            "vocab": None if self.model_type == "lora" else self.space.sid_layout_dict(),
            "token_space": self.space.to_dict(),
            "lora": None if self.model_type != "lora" else {
                "architecture": self.architecture, "base_model": self.base_model, "text_tokenizer": TEXT_TOKENIZER_DIR,
                "merged": True},  # model/ holds the adapter merged into the base weights (peft merge_and_unload)
            "inputs": None if self.text_inputs is None else self.text_inputs.to_dict(),
            "max_history": self.max_history,
            "generation": asdict(self.generation),
            "num_items": self.num_items,
            "tokenizer_method": self.tokenizer.method,
            "training_data": self.training_data,
            "metrics": self.metrics,
            "evaluation": self.evaluation,
            "popular_items": None if self.popular_items is None else {
                "file": POPULAR_FILE, "count": len(self.popular_items.item_ids), "source": self.popular_items.source},
            "user_ids": None if self.user_ids is None else {"file": USERS_FILE, "count": len(self.user_ids)},
            "warm_items": None if self.warm_item_ids is None else {"file": WARM_ITEMS_FILE, "count": len(self.warm_item_ids)},
            "item_embeddings": None if self.item_embeddings is None else {
                "file": ITEM_EMBEDDINGS_FILE, "shape": list(self.item_embeddings.shape)},
            "user_tokens": ("training users: their training bucket (index % num_user_tokens); other user ids: "
                            "crc32(user_id) % num_user_tokens; no user id: bucket 0") if self.space.num_user_tokens else None,
        }

    # ---- recommending -----------------------------------------------------------------------------------
    def user_index(self, user_id: str | None) -> int:
        """The index whose user-token bucket this user gets (see the module docstring)."""
        if user_id is None:
            return 0
        known = self._user_index.get(user_id)
        return known if known is not None else zlib.crc32(str(user_id).encode("utf-8"))

    def __call__(self, histories, k: int = 10, **kwargs) -> list[Recommendation]:
        return self.recommend(histories, k=k, **kwargs)

    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10, *, user_ids: Sequence[str | None] | None = None,
                  exclude_seen: bool = False, strict: bool = False, empty_history: EmptyHistory = "error",
                  num_beams: int | None = None, batch_size: int | None = None,
                  search: str | None = None, cold_start: ColdStartSettings | dict | None = None) -> list[Recommendation]:
        """Top-``k`` catalogue items for each history.

        Called with each user's id (``user_ids``) and the defaults, the lists are the ones the
        recipe's evaluation ranks (same prompts, user tokens and search; tested). Without a user id a
        history gets user-token bucket 0, which evaluation never uses for an unknown user;
        ``exclude_seen=True`` drops items of the history, which evaluation does not.

        Args:
            histories: B histories, each a list of raw item ids, oldest first (integers are read as
                their decimal string). Pass ``[history]`` for one user.
            k: items per history.
            user_ids: B user ids (or None entries) choosing the user tokens (training users: their own
                token; other ids: a hash bucket); None = no user ids (bucket 0 for every history).
            exclude_seen: never recommend an item of the history (all of it, not only the last
                ``max_history`` items the model reads). Default False, as evaluation ranks.
            strict: unknown item ids raise :class:`UnknownItemError`; otherwise they are skipped, counted
                in each result's ``unknown_item_ids`` and reported in one warning per call.
            empty_history: a history that is empty (or only unknown ids): ``"error"`` raises
                :class:`EmptyHistoryError`; ``"popular"`` returns the most frequent training items
                (``source="popular"``; needs the bundle's popular items).
            num_beams: beam width (default: the bundle's ``generation.num_beams``); at least ``k`` is used.
            batch_size: users decoded together (default ``generation.batch_size``). Histories are
                sorted by length into batches (less padding); results come back in input order.
            search: ``"beam"`` or ``"exact"`` (the model's exact top k; default ``generation.search``).
            cold_start: how cold items (no training interactions, e.g. added with :meth:`add_items`) join the
                lists: a :class:`ColdStartSettings` or its fields as a dict (default ``generation.cold_start``:
                off unless the bundle sets it). ``method="prefix"`` (TIGER: matched on their semantic codes,
                at most ``floor(epsilon * k)`` cold items per list) or ``"content"`` (the ``drafts`` cold
                items nearest in content to the history, scored by the model on their semantic codes plus
                ``content_weight`` x cosine; needs :attr:`item_embeddings`). ``score_offset`` and
                ``placement="tail"`` admit cold items only when they beat the list's tail by the offset,
                and in the last places (``benchmarks/cold_start.py`` calibrates them on validation).
                ``"fusion"`` merges the model's list with a recency-weighted content ranking of the whole
                catalogue (reciprocal-rank fusion: ``history_decay``, ``fusion_weight``, ``cold_boost``;
                needs :attr:`item_embeddings`); it changes warm items' order too, and its scores are the
                fused values.

        Returns:
            B :class:`Recommendation`, in the order of ``histories``.
        """
        if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
            raise TypeError(f"histories must be a list of histories (lists of item ids), got {type(histories).__name__}")
        if histories and all(isinstance(h, (str, Integral)) for h in histories):
            raise TypeError("histories must be a list of histories, got a flat list of item ids: pass [history] for one user")
        if not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if empty_history not in ("error", "popular"):
            raise ValueError(f"empty_history must be 'error' or 'popular', got {empty_history!r}")
        if user_ids is not None and len(user_ids) != len(histories):
            raise ValueError(f"{len(user_ids)} user ids for {len(histories)} histories")
        if num_beams is not None and (not isinstance(num_beams, Integral) or num_beams < 1):
            raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
        num_beams = max(int(num_beams or self.generation.num_beams), int(k))
        search = search or self.generation.search
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
        batch_size = int(batch_size or self.generation.batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if cold_start is None:
            cold_start = self.generation.cold_start
        elif isinstance(cold_start, dict):
            cold_start = ColdStartSettings.from_dict(cold_start, base=self.generation.cold_start)
        elif not isinstance(cold_start, ColdStartSettings):
            raise TypeError(f"cold_start must be ColdStartSettings or a dict, got {type(cold_start).__name__}")
        if cold_start.method != "off" and self._cold_catalogue is None:
            raise ValueError("cold-start decoding needs the recommender's warm items (items with training interactions); "
                             "this one has none (built without its training data)")
        if cold_start.method in ("content", "fusion") and self.item_embeddings is None:
            raise ValueError(f"cold_start.method={cold_start.method!r} needs the items' content vectors, and this recommender has none: "
                             "build it with item_embeddings= (from_run / from_pretrained(..., item_embeddings='text') "
                             "embeds the tokenizer's item texts), or use method='prefix'")

        users = [None if user_ids is None or user_ids[i] is None else str(user_ids[i]) for i in range(len(histories))]
        results: list[Recommendation | None] = [None] * len(histories)
        known_histories: dict[int, list[int]] = {}
        unknown_report = []
        for i, history in enumerate(histories):
            known, unknown = self._item_indices(history, i, users[i])
            if unknown:
                if strict:
                    raise UnknownItemError(f"request {i}{_who(users[i])}: {len(unknown)} item id(s) not in the catalogue of "
                                           f"{self.num_items} items: {unknown[:10]}", i, users[i], unknown)
                unknown_report.append((i, users[i], unknown))
            if known:
                known_histories[i] = known
                results[i] = Recommendation([], [], users[i], "model", unknown)
                continue
            reason = "an empty history" if not unknown else f"only unknown item ids ({len(unknown)})"
            if empty_history == "error":
                raise EmptyHistoryError(i, users[i], f"{reason}; nothing to recommend from "
                                        "(empty_history='popular' gives the most frequent training items)")
            if self.popular_items is None:
                raise EmptyHistoryError(i, users[i], f"{reason}, and this recommender has no popular items for the "
                                        f"fallback (no {POPULAR_FILE}: it was built without its training data)")
            items, scores = self.popular_items.top(k)
            results[i] = Recommendation(items, scores, users[i], "popular", unknown)
        if unknown_report:
            total = sum(len(u) for _, _, u in unknown_report)
            shown = "; ".join(f"request {i}{_who(u)}: {len(ids)} ({ids[:3]})" for i, u, ids in unknown_report[:10])
            more = f"; ... and {len(unknown_report) - 10} more request(s)" if len(unknown_report) > 10 else ""
            logger.warning("skipped %d unknown item id(s) in %d of %d request(s): %s%s", total, len(unknown_report),
                           len(histories), shown, more)

        # Model requests, sorted by (truncated) history length so that batches need little padding.
        todo = sorted(known_histories, key=lambda i: min(len(known_histories[i]), self.max_history))
        for start in range(0, len(todo), batch_size):
            rows = todo[start:start + batch_size]
            items, scores = self._decode([known_histories[i] for i in rows], [users[i] for i in rows], k, num_beams, exclude_seen,
                                         search, cold_start)
            for row, item_row, score_row in zip(rows, items.tolist(), scores.tolist(), strict=True):
                kept = [(self.item_ids[item], score) for item, score in zip(item_row, score_row, strict=True) if item >= 0]
                results[row].item_ids = [item for item, _ in kept]
                results[row].scores = [score for _, score in kept]
        return results  # type: ignore[return-value]

    def _item_indices(self, history, request: int, user: str | None) -> tuple[list[int], list[str]]:
        """History ids -> (known item indices, unknown ids), in history order."""
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
            raise TypeError(f"request {request}{_who(user)}: a history must be a list of item ids, got {type(history).__name__}")
        known, unknown = [], []
        for position, item in enumerate(history):
            if isinstance(item, Integral) and not isinstance(item, bool):
                item = str(int(item))
            elif not isinstance(item, str):
                raise TypeError(f"request {request}{_who(user)}: history[{position}] must be an item id (string), got {item!r}")
            index = self._item_index.get(item)
            if index is None:
                unknown.append(item)
            else:
                known.append(index)
        return known, unknown

    @torch.no_grad()
    def _decode(self, histories: list[list[int]], users: list[str | None], k: int, num_beams: int,
                exclude_seen: bool, search_kind: str = "beam",
                cold_start: ColdStartSettings | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item indices and scores (B, k) for B non-empty histories of item indices (-1 / -inf: none)."""
        cut = [h[-self.max_history:] for h in histories]
        lengths = np.array([len(h) for h in cut], dtype=np.int64)
        offsets = np.zeros(len(cut) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        examples = Examples(user_index=np.array([self.user_index(u) for u in users], dtype=np.int64),
                            target=np.zeros(len(cut), dtype=np.int64),  # unused by the encoder input
                            history_values=np.concatenate([np.asarray(h, dtype=np.int64) for h in cut]), history_offsets=offsets)
        input_ids, attention_mask = encode_histories(examples, self.item_tokens, self.space, self.text_inputs,
                                                     eos=prompt_eos_id(self.model.config, self.space.eos_id) is not None)
        exclude = [sorted(set(h)) for h in histories] if exclude_seen else None
        history_items = torch.from_numpy(examples.padded_histories())  # "content" / "fusion" input
        settings = GenerationSettings(num_beams=num_beams, normalization=self.generation.normalization,
                                      batch_size=self.generation.batch_size, search=search_kind,
                                      max_width=max(self.generation.max_width, num_beams, k),
                                      cold_start=cold_start or ColdStartSettings())
        found = search(self.model, input_ids.to(self.device), attention_mask.to(self.device), self.trie, top_k=k,
                       settings=settings, exclude_items=exclude, cold_catalogue=self._cold_catalogue,
                       history_items=history_items.to(self.device))
        items, scores = found.items, found.scores
        return items.cpu(), scores.cpu()

    # ---- saving -----------------------------------------------------------------------------------------
    def merged_model(self):
        """The model as a bundle saves it: a peft model's adapter merged into a copy of its base model
        (``merge_and_unload``; the recommender's own model is left as it is), any other model itself."""
        if not is_peft(self.model):
            return self.model
        return merge_lora(copy.deepcopy(self.model)).eval()

    def _write_files(self, directory: Path, repo_id: str | None, include_user_ids: bool) -> None:
        model = self.merged_model()
        model.save_pretrained(directory / MODEL_DIR, safe_serialization=True)
        check_saved_weights(model, directory / MODEL_DIR)
        del model
        self.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        if self.text_tokenizer is not None:
            self.text_tokenizer.save_pretrained(directory / TEXT_TOKENIZER_DIR)
        if self.text_inputs is not None and self.text_inputs.item_text_tokens is not None:
            self.text_inputs.save_item_tokens(directory / ITEM_TEXT_FILE)
        if self.popular_items is not None:
            write_json(directory / POPULAR_FILE, self.popular_items.to_dict())
        config = self.config
        if self.warm_item_ids is not None:
            write_json(directory / WARM_ITEMS_FILE, {"item_ids": self.warm_item_ids})
        if self.item_embeddings is not None:
            write_item_embeddings(directory / ITEM_EMBEDDINGS_FILE, self.item_embeddings)
        if self.user_ids is not None and include_user_ids:
            write_json(directory / USERS_FILE, {"user_ids": self.user_ids})
        else:
            config["user_ids"] = None
        build_model_card(config, self.tokenizer.config, repo_id=repo_id).save(directory / CARD_FILE)
        write_json(directory / CONFIG_FILE, config)

    def save_pretrained(self, save_directory: str | Path, *, repo_id: str | None = None, include_user_ids: bool = True) -> Path:
        """Write the bundle to ``save_directory`` atomically; returns the folder.

        Everything is written to a temporary folder next to the target, then moved in place: a new
        or empty target by one rename; an existing bundle (a folder holding only bundle files) is
        renamed aside first and deleted after, so a crash leaves either bundle complete. Any other
        non-empty folder is refused (nothing of yours is deleted).

        Args:
            repo_id: Hub repo id to name in the model card (set by :meth:`push_to_hub`).
            include_user_ids: write the training user ids (``user_ids.json``) so that known users keep their
                training user tokens. False leaves them out (e.g. before sharing private data): every user
                id is then hashed to its user token.
        """
        target = Path(save_directory)
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{target} exists and is not a directory")
        existing = sorted(p.name for p in target.iterdir()) if target.is_dir() else []
        if existing and (CONFIG_FILE not in existing or set(existing) - set(BUNDLE_ENTRIES)):
            raise FileExistsError(f"{target} is not empty and not a genrec recommender bundle (holds {existing[:8]}); "
                                  "save to a new or empty folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        staging.mkdir()  # not new_tmp_dir: its mode 0700 would become the bundle folder's
        try:
            self._write_files(staging, repo_id, include_user_ids)
            replace_dir(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload genrec recommender", private: bool | None = None,
                    token: str | None = None, branch: str | None = None, create_pr: bool | None = None,
                    include_user_ids: bool = True):
        """Create ``repo_id`` if needed (model repo) and upload the whole bundle in one commit.

        ``include_user_ids`` as in :meth:`save_pretrained` (the training user ids become public with a public repo).
        Uses ``huggingface_hub.HfApi`` (``create_repo`` + ``upload_folder``); the endpoint comes from
        ``HF_ENDPOINT``, the token from ``token`` / ``HF_TOKEN`` / the saved login. Returns the
        ``CommitInfo`` (``.oid`` is the commit hash).
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory(prefix="genrec-recommender-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "bundle", repo_id=repo_id, include_user_ids=include_user_ids)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                     revision=branch, create_pr=create_pr)

    # ---- loading ----------------------------------------------------------------------------------------
    @staticmethod
    def text_item_embeddings(tokenizer: SIDTokenizer, source: str = "text", dataset=None) -> torch.Tensor:
        """``(N, d)`` content vectors for the ``"content"`` cold-start method: the tokenizer's own inputs rebuilt.

        ``source="text"``: every item's text (the tokenizer's recorded ``text_template`` over the item table
        of ``dataset``, whose items must be the tokenizer's, in its order) embedded with the default
        sentence-transformers model, read from the embedding cache when it holds them. Only a
        tokenizer trained on such text embeddings has matching vectors (checked: the width must equal
        its ``embedding_dim``).
        """
        from genrec.tokenizer_inputs import build_tokenizer_inputs

        if source != "text":
            raise ValueError(f"item_embeddings must be a tensor or 'text', got {source!r}")
        if dataset is None:
            raise ValueError("item_embeddings='text' needs the catalogue's item table (a run folder's dataset)")
        if not tokenizer.text_template:
            raise ValueError("item_embeddings='text': the tokenizer records no text template (it was not trained on item "
                             "text alone); pass its input vectors as a tensor")
        if list(dataset.item_ids) != list(tokenizer.item_ids):
            raise ValueError(f"item_embeddings='text': the dataset's items differ from the tokenizer's "
                             f"({len(dataset.item_ids)} vs {len(tokenizer)} items, or another order)")
        vectors = build_tokenizer_inputs(dataset.items, text_template=tokenizer.text_template).x
        if vectors.shape[1] != tokenizer.embedding_dim:
            raise ValueError(f"item_embeddings='text' gives {vectors.shape[1]}-d vectors, the tokenizer read "
                             f"{tokenizer.embedding_dim}-d ones: pass its input vectors as a tensor")
        return vectors

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, tokenizer: SIDTokenizer | str | Path | None = None,
                        device=None, data_dir: str | Path | None = None, base_model: str | Path | None = None,
                        revision: str | None = None, cache_dir: str | Path | None = None, force_download: bool = False,
                        token: str | bool | None = None, local_files_only: bool = False,
                        require_training_data: bool = False,
                        item_embeddings: torch.Tensor | str | None = None) -> GenerativeRecommender:
        """Load a bundle folder (:meth:`save_pretrained`), a training run folder, or a Hub repo id.

        Args:
            pretrained_model_name_or_path: a bundle folder, a ``recipes/train_genrec.py`` output folder
                (``best/``, ``config.json``, ``token_space.json`` or ``vocab.json``), or a Hub model repo id
                holding a bundle.
            tokenizer: a :class:`SIDTokenizer` or its folder / repo id, replacing the bundle's or the run's
                ``tokenizer_dir`` (e.g. a run whose tokenizer folder moved or uses an older layout).
                Its SID levels must match the model's vocabulary.
            device: "cpu", "cuda", ... (default "auto": CUDA when available, else CPU).
            data_dir: run folders only: where the run's dataset is (default: the run's ``data_dir``, then
                ``$GENREC_DATA_DIR``); it gives the popular items, the training users and (LoRA runs that
                mixed item text into the input) the item titles.
            base_model: LoRA run folders only: the pretrained checkpoint folder the adapter was trained on
                (default: the adapter's ``base_model_name_or_path``, then the run's ``model.lora.pretrained``).
            revision, cache_dir, force_download, token, local_files_only: Hub repos only (``snapshot_download``).
            require_training_data: run folders only: an error instead of a warning when the run's dataset
                cannot be loaded (``genrec export`` sets it: a bundle without popular items and training
                users would hash every user id and could not answer empty histories).
            item_embeddings: content vectors for the ``"content"`` cold-start method: an ``(N, d)`` tensor
                (row = item index), or ``"text"``: the tokenizer's item texts embedded again
                (:meth:`text_item_embeddings`). Default: a bundle's own (if it has them), none for a run.
        """
        device = _resolve_device(device)
        path = Path(pretrained_model_name_or_path).expanduser()
        if path.is_dir():
            if revision is not None:
                raise ValueError(f"revision={revision!r} applies to Hub repos, but {path} is a local folder")
            if (path / CONFIG_FILE).is_file():
                return cls._load_bundle(path, str(path), tokenizer=tokenizer, device=device, item_embeddings=item_embeddings)
            if (path / "best").is_dir() or (path / "vocab.json").is_file() or (path / "token_space.json").is_file():
                return cls.from_run(path, tokenizer=tokenizer, device=device, data_dir=data_dir, base_model=base_model,
                                    load_training_data="required" if require_training_data else True,
                                    item_embeddings=item_embeddings)
            raise FileNotFoundError(f"{path}: neither a genrec recommender bundle (no {CONFIG_FILE}) nor a train_genrec.py "
                                    "run folder (no best/ and token_space.json or vocab.json)")
        folder = download_bundle(str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
                           force_download=force_download, token=token, local_files_only=local_files_only)
        return cls._load_bundle(folder, f"Hub repo {pretrained_model_name_or_path} ({folder})", tokenizer=tokenizer, device=device,
                                item_embeddings=item_embeddings)

    @classmethod
    def _load_bundle(cls, folder: Path, where: str, *, tokenizer=None, device=None, item_embeddings=None) -> GenerativeRecommender:
        refuse_pickles([str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()], where, "recommenders")
        for name in REQUIRED_FILES:
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{where}: missing file {name} (a genrec recommender bundle needs {list(REQUIRED_FILES)})")
        config_path = folder / CONFIG_FILE
        config = read_json(config_path)
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a JSON object")
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{config_path}: unsupported format_version {version!r}; this genrec reads version {FORMAT_VERSION}")
        missing = [key for key in ("model_type", "max_history", "generation") if key not in config]
        if config.get("vocab") is None and config.get("token_space") is None:
            missing.append("token_space")
        if missing:
            raise ValueError(f"{config_path}: missing key(s) {missing}")
        model_type = config["model_type"]
        backend = get_backend(model_type, str(config_path))
        try:
            vocab = TokenSpace.from_dict(config["vocab"]) if config.get("vocab") is not None else None
            space = TokenSpace.from_dict(config["token_space"]) if config.get("token_space") is not None else vocab
            generation = GenerationSettings(**config["generation"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{config_path}: invalid vocab, token_space or generation settings: {e}") from e
        if vocab is not None and vocab != space:
            raise ValueError(f"{config_path}: vocab and token_space disagree ({vocab} vs {space})")
        if model_type != "lora" and vocab is None:
            raise ValueError(f"{config_path}: missing key(s) ['vocab'] (a {model_type} model uses the SID token layout)")

        popular = read_popular_items(folder, where) if config.get("popular_items") is not None else None
        user_ids = read_user_ids(folder, where) if config.get("user_ids") is not None else None
        warm_items = read_warm_items(folder, where) if config.get("warm_items") is not None else None

        if tokenizer is None:
            tokenizer = SIDTokenizer.from_pretrained(folder / TOKENIZER_DIR)
        tokenizer = _as_tokenizer(tokenizer)
        if config.get("num_items") is not None and config["num_items"] != len(tokenizer):
            raise ValueError(f"{config_path}: num_items={config['num_items']}, but the tokenizer has {len(tokenizer)} items")
        if popular is not None:
            unknown = [item for item in popular.item_ids if item not in tokenizer]
            if unknown:
                raise ValueError(f"{folder / POPULAR_FILE}: {len(unknown)} popular item(s) not in the tokenizer, e.g. {unknown[:5]}")

        text_tokenizer = text_inputs = None
        lora = config.get("lora") or {}
        if model_type == "lora":
            for name in LORA_REQUIRED_FILES:
                if not (folder / name).is_file():
                    raise FileNotFoundError(f"{where}: missing file {name} (a LoRA bundle holds its text tokenizer)")
            text_tokenizer = load_text_tokenizer(folder / TEXT_TOKENIZER_DIR)
        inputs = config.get("inputs")
        if inputs is not None:
            try:
                item_text_tokens = None
                if inputs.get("item_text_tokens") is not None:
                    if not (folder / ITEM_TEXT_FILE).is_file():
                        raise FileNotFoundError(f"{where}: missing file {ITEM_TEXT_FILE} ({CONFIG_FILE} lists item text tokens)")
                    item_text_tokens = TextInputs.load_item_tokens(folder / ITEM_TEXT_FILE, len(tokenizer))
                text_inputs = TextInputs(item_text_tokens, inputs.get("prompt_tokens"), inputs.get("item_text_template"),
                                         inputs.get("max_item_text_tokens"), inputs.get("prompt") or "")
            except (AttributeError, TypeError) as e:
                raise ValueError(f"{config_path}: invalid inputs: {e}") from e
        if isinstance(item_embeddings, str):
            raise ValueError(f"{where}: item_embeddings={item_embeddings!r} rebuilds a run folder's vectors from its dataset; "
                             "a bundle holds its own (or pass them as a tensor)")
        if item_embeddings is None and config.get("item_embeddings") is not None:
            item_embeddings = read_item_embeddings(folder, where, len(tokenizer))
        model = load_saved_model(backend, folder / MODEL_DIR)
        if model_type == "lora" and lora.get("architecture") not in (None, architecture(model)):
            raise ValueError(f"{config_path}: lora.architecture is {lora.get('architecture')!r}, but {MODEL_DIR}/ holds a "
                             f"{architecture(model)} model")
        try:
            return cls(model, tokenizer, space, max_history=int(config["max_history"]),
                       generation=generation, popular_items=popular, user_ids=user_ids, metrics=config.get("metrics"),
                       evaluation=config.get("evaluation"), training_data=config.get("training_data"), model_type=model_type,
                       text_inputs=text_inputs, text_tokenizer=text_tokenizer, base_model=lora.get("base_model"),
                       warm_item_ids=warm_items, item_embeddings=item_embeddings, device=device)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e

    @classmethod
    def from_run(cls, run_dir: str | Path, *, tokenizer: SIDTokenizer | str | Path | None = None, device=None,
                 data_dir: str | Path | None = None, load_training_data: bool | str = True,
                 base_model: str | Path | None = None, item_embeddings: torch.Tensor | str | None = None) -> GenerativeRecommender:
        """Build from a ``recipes/train_genrec.py`` output folder.

        The folder holds ``best/`` (the model; LoRA: the adapter), ``config.json``, ``token_space.json``
        (runs older than it: ``vocab.json``), ``metrics.json`` and, for LoRA runs, ``text_tokenizer/``. The
        model is loaded as the recipe's evaluation loads it (:func:`genrec.models.load_model`: a LoRA
        adapter on its base checkpoint, not merged), and the inputs are built with the recipe's arguments
        (LoRA: item titles and prompt from ``model.lora``), so recommendations equal the recipe's ranking.

        Args:
            tokenizer: a :class:`SIDTokenizer` or its folder / repo id; default the run's ``tokenizer_dir``.
            device: "cpu", "cuda", ... (default "auto": CUDA when available, else CPU).
            data_dir: where the run's dataset is (default: the run's ``data_dir``, then ``$GENREC_DATA_DIR``).
            load_training_data: load the run's dataset for the popular items (counts over the training
                part of the leave-one-out split) and the training users (their user-token buckets).
                If it cannot be loaded, both are left out with a warning ("required": an error). The split
                holds out the run's cold items (``cold_item_fraction``), as training did. A LoRA run that put item text
                into the input always needs the dataset's item table (an error without it).
            base_model: LoRA runs: the pretrained checkpoint folder (default: the adapter's
                ``base_model_name_or_path``, then the run's ``model.lora.pretrained``).
            item_embeddings: content vectors for the ``"content"`` cold-start method (see :meth:`from_pretrained`).
        """
        device = _resolve_device(device)
        run = open_run(run_dir, data_dir=None if data_dir is None else str(data_dir))
        folder = run.folder
        refuse_pickles([str(p.relative_to(folder)) for p in run.best_dir.rglob("*") if p.is_file()], str(run.best_dir), "recommenders")
        model_type = run.checked_model_type()
        space = run.token_space
        if tokenizer is None:
            tokenizer_dir = run.manifest.tokenizer_dir
            if tokenizer_dir is None or not Path(tokenizer_dir).is_dir():
                raise FileNotFoundError(f"{folder}: tokenizer_dir={run.config.get('tokenizer_dir', tokenizer_dir)!r} is not a folder "
                                        "(relative paths are read from the current directory or the training's); pass "
                                        "tokenizer=PATH_OR_REPO_ID")
            try:
                tokenizer = SIDTokenizer.from_pretrained(tokenizer_dir)
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(f"{folder}: cannot load the run's tokenizer {tokenizer_dir} ({e}); pass tokenizer= a SIDTokenizer "
                                 "folder or repo id holding the same SID table") from e
        tokenizer = _as_tokenizer(tokenizer)
        run_metrics = run.metrics()
        metrics = {split: run_metrics[split] for split in ("validation", "test") if split in run_metrics} or None
        dataset_name = run.config.get("dataset", run.manifest.dataset)
        evaluation = {"protocol": "chronological leave-one-out, full-catalogue ranking by trie-constrained beam search",
                      "num_beams": run.generation.num_beams, "ks": run.manifest.ks, "dataset": dataset_name,
                      "num_users": run_metrics.get("timings", {}).get("test_users")}
        lora_cfg = run.model_config.lora if model_type == "lora" else None
        needs_items = bool(lora_cfg.item_text_template) if lora_cfg is not None else False
        if isinstance(item_embeddings, str):  # before the model: a wrong setting fails fast
            item_embeddings = cls.text_item_embeddings(tokenizer, item_embeddings, dataset=run.dataset())

        popular, user_ids, training_data, items, warm_items = None, None, f"{dataset_name}", None, None
        if load_training_data or needs_items:
            try:
                dataset = run.dataset()
                # The run's cold items were never trained on: popular items and training users must not count them.
                split = run.split() if load_training_data else None
            except (OSError, ValueError, KeyError) as e:
                if load_training_data == "required":
                    raise ValueError(f"{folder}: cannot load the run's dataset {dataset_name!r} ({e}): pass the data directory "
                                     "(--data-dir / data_dir=); without it the bundle would have no popular items and no "
                                     "training users (--allow-missing-data exports it anyway)") from e
                if needs_items:
                    raise ValueError(f"{folder}: cannot load the run's dataset {dataset_name!r} ({e}): this LoRA run put item "
                                     f"text ({lora_cfg.item_text_template!r}) into its inputs, which needs the "
                                     "dataset's item table; pass data_dir=") from e
                logger.warning("%s: cannot load the run's dataset %r (%s): no popular items (empty_history='popular' "
                               "unavailable) and every user id is hashed to its user token", folder, dataset_name, e)
            else:
                if list(dataset.item_ids) != list(tokenizer.item_ids):
                    raise ValueError(f"{folder}: the tokenizer's items differ from the catalogue of dataset {dataset_name!r} "
                                     f"({len(tokenizer)} vs {len(dataset.item_ids)} items, or another order)")
                items = dataset.items
                if split is not None:
                    popular = PopularItems.from_sequences(split.item_ids, split.train_item_sequences())
                    warm_items = [item for item, cold in zip(split.item_ids, split.untrained_items(), strict=True) if not cold]
                    user_ids = split.user_ids
                    training_data = (f"{dataset.name}: {len(split.item_ids)} items, {len(split.user_ids)} users, "
                                     f"{len(dataset.interactions)} interactions (chronological leave-one-out split)")
        text_tokenizer = text_inputs = base_path = None
        if model_type == "lora":
            text_tokenizer = load_text_tokenizer(run.text_tokenizer_dir)
            text_inputs = TextInputs.from_lora_config(lora_cfg, items, text_tokenizer)
            base_path = run.lora_base_path(base_model)
            model = run.load_lora_model(base_path)
        else:
            model = load_saved_model(get_backend(model_type, str(run.best_dir)), run.best_dir)
        try:
            return cls(model, tokenizer, space, max_history=run.manifest.split.max_history, generation=run.generation,
                       popular_items=popular, user_ids=user_ids, metrics=metrics, evaluation=evaluation,
                       training_data=training_data, model_type=model_type, text_inputs=text_inputs, text_tokenizer=text_tokenizer,
                       base_model=None if base_path is None else str(lora_cfg.pretrained or base_path), warm_item_ids=warm_items,
                       item_embeddings=item_embeddings, device=device)
        except ValueError as e:
            raise ValueError(f"{folder}: {e}") from e


def _who(user_id: str | None) -> str:
    return "" if user_id is None else f" (user {user_id!r})"


def _as_tokenizer(tokenizer) -> SIDTokenizer:
    if isinstance(tokenizer, SIDTokenizer):
        return tokenizer
    return SIDTokenizer.from_pretrained(tokenizer)


__all__ = [
    "CONFIG_FILE", "FORMAT_VERSION", "EmptyHistoryError", "GenerationSettings", "GenerativeRecommender", "PopularItems",
    "Recommendation", "TextInputs", "UnknownItemError", "build_model_card",
]
