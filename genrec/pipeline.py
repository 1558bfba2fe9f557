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

A saved recommender (a *bundle*) is a folder or Hub model repo holding JSON and safetensors only
(plus the text tokenizer's own files for LoRA models):

    genrec_config.json     format_version, model_type, token_space (and vocab for t5/causal), max_history,
                           generation settings (num_beams, normalization, batch_size), inputs (text mixed
                           into the input), lora (architecture, base model), evaluation metrics,
                           training-data description, which optional files are present
    model/                 the model as Hugging Face ``save_pretrained`` writes it (config.json,
                           generation_config.json, model.safetensors); LoRA: the adapter merged into its
                           base model (peft ``merge_and_unload``), so the bundle needs no base checkpoint
    tokenizer/             the :class:`~genrec.tokenizer.SIDTokenizer` artifact (its own README card)
    text_tokenizer/        LoRA only: the base model's text tokenizer extended with the SID/user tokens
    item_text_tokens.safetensors
                           LoRA runs that mixed item text into the history: the text tokens of every
                           catalogue item (``values`` + ``offsets``, row = item index), exactly as in training
    popular_items.json     optional: the most frequent items of the training data with their counts
                           (the ``empty_history="popular"`` fallback)
    user_ids.json          optional: training users in training order (their user-token buckets)
    README.md              model card with the evaluation metrics

Loading never unpickles: folders or repos holding ``*.bin``/``*.pt``/``*.pth``/``*.pkl``/``*.pickle``/
``*.ckpt`` files are refused, the weights are read with ``use_safetensors=True``.

:meth:`GenerativeRecommender.from_pretrained` also reads a training run folder written by
``recipes/train_genrec.py`` (``best/``, ``config.json``, ``token_space.json`` or, for runs older than it,
``vocab.json``, ``metrics.json``; LoRA runs: ``text_tokenizer/`` and the base checkpoint named by the
adapter); the tokenizer then comes from the run's ``tokenizer_dir`` or the ``tokenizer=`` argument, and
the popular items, the user list and (LoRA) the item texts are computed from the run's dataset.

Model types (``model_type`` in the bundle config): ``"t5"`` (encoder-decoder, TIGER; decoded with
:func:`~genrec.decoding.constrained_beam_search`), ``"causal"`` (decoder-only causal LM on the same
prompt, left-aligned; :func:`~genrec.decoding.constrained_beam_search_causal`) and ``"lora"`` (a
pretrained seq2seq or decoder-only LM fine-tuned with LoRA, its text tokenizer extended with the SID
tokens; ``lora.architecture`` in the config says which decoding it gets). A new type is one
:class:`ModelBackend` subclass added to :data:`MODEL_BACKENDS`.

User tokens (TIGER's hashed user ids, when the token space has them): a user id seen in training gets
its training bucket (``training index % num_user_tokens``, exactly as in evaluation); any other user id
gets ``crc32(user_id) % num_user_tokens`` (stable across runs and machines); no user id gets bucket 0.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from genrec.data import Examples, Seq2SeqCollator, build_seq2seq_dataset
from genrec.decoding import PrefixTrie, constrained_beam_search, constrained_beam_search_causal, exact_top_k
from genrec.models.lora import merge_lora
from genrec.models.t5 import prompt_eos_id
from genrec.models.tokens import TokenSpace
from genrec.tokenizer import SIDTokenizer
from genrec.tokenizer.hub import check_loadable_folder, download_snapshot, refuse_pickles
from genrec.vocab import SIDVocab

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "genrec_config.json"
MODEL_DIR = "model"
TOKENIZER_DIR = "tokenizer"
POPULAR_FILE = "popular_items.json"
USERS_FILE = "user_ids.json"
SEARCHES = ("beam", "exact")
CARD_FILE = "README.md"
TEXT_TOKENIZER_DIR = "text_tokenizer"
ITEM_TEXT_FILE = "item_text_tokens.safetensors"
MODEL_WEIGHTS = "model.safetensors"
REQUIRED_FILES = (CONFIG_FILE, f"{MODEL_DIR}/config.json", f"{MODEL_DIR}/{MODEL_WEIGHTS}",
                  f"{TOKENIZER_DIR}/sid_tokenizer_config.json", f"{TOKENIZER_DIR}/quantizer.safetensors",
                  f"{TOKENIZER_DIR}/sid_table.safetensors", f"{TOKENIZER_DIR}/sid_items.json")
LORA_REQUIRED_FILES = (f"{TEXT_TOKENIZER_DIR}/tokenizer_config.json",)
# Everything a bundle may hold at its top level (save_pretrained replaces a folder holding only these).
BUNDLE_ENTRIES = (CONFIG_FILE, MODEL_DIR, TOKENIZER_DIR, TEXT_TOKENIZER_DIR, ITEM_TEXT_FILE, POPULAR_FILE, USERS_FILE, CARD_FILE)
NUM_POPULAR_ITEMS = 1000
POPULARITY_SOURCE = ("item counts over the training part of the chronological leave-one-out split (every user's "
                     "interactions except the last two, so validation and test targets are not counted)")

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


@dataclass
class GenerationSettings:
    """Decoding settings saved with the bundle (``generation`` in ``genrec_config.json``).

    Attributes:
        num_beams: beams kept per user at every SID level (the run's ``eval.num_beams``); ``recommend``
            uses ``max(num_beams, k)``.
        normalization: ``"vocab"`` (softmax over the whole vocabulary, as in training) or ``"level"``.
        batch_size: users decoded together (a recommender built without settings: 256 for
            encoder-decoder models, 32 for decoder-only ones).
        search: ``"beam"`` (beam search with ``num_beams``) or ``"exact"`` (the model's exact top k,
            :func:`genrec.decoding.exact_top_k`, frontier widened up to ``max_width``).
    """

    num_beams: int = 20
    normalization: str = "vocab"
    batch_size: int = 256
    search: str = "beam"
    max_width: int = 512

    def __post_init__(self):
        if self.num_beams < 1 or self.batch_size < 1:
            raise ValueError(f"num_beams and batch_size must be >= 1, got {self.num_beams} and {self.batch_size}")
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {self.search!r}")
        if self.normalization not in ("vocab", "level"):
            raise ValueError(f"normalization must be 'vocab' or 'level', got {self.normalization!r}")


@dataclass
class PopularItems:
    """The most frequent items of the training data (the empty-history fallback).

    Attributes:
        item_ids: most frequent first (ties: catalogue order).
        counts: their interaction counts.
        total: number of interactions counted (scores are ``log(count / total)``).
        source: where the counts come from (recorded in the bundle and its card).
    """

    item_ids: list[str]
    counts: list[int]
    total: int
    source: str = POPULARITY_SOURCE

    def __post_init__(self):
        if len(self.item_ids) != len(self.counts):
            raise ValueError(f"popular items: {len(self.item_ids)} ids but {len(self.counts)} counts")
        if self.total < sum(self.counts) or any(c < 1 for c in self.counts):
            raise ValueError("popular items: counts must be >= 1 and sum to at most total")

    @classmethod
    def from_sequences(cls, item_ids: Sequence[str], sequences: Sequence[Sequence[int]], top: int = NUM_POPULAR_ITEMS,
                       source: str = POPULARITY_SOURCE) -> PopularItems:
        """Count item indices over ``sequences`` (e.g. ``SplitData.train_item_sequences()``) and keep the ``top``."""
        counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else
                             np.zeros(0, dtype=np.int64), minlength=len(item_ids))
        order = np.lexsort((np.arange(len(counts)), -counts))  # count descending, ties by catalogue index
        order = [int(i) for i in order[:top] if counts[i] > 0]
        return cls([item_ids[i] for i in order], [int(counts[i]) for i in order], int(counts.sum()), source)

    def top(self, k: int) -> tuple[list[str], list[float]]:
        return self.item_ids[:k], [math.log(c / self.total) for c in self.counts[:k]]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TextInputs:
    """Text mixed into the model input (LoRA runs on a pretrained LM), exactly as the training recipe built it.

    A history item is then its text tokens (e.g. its title in the text tokenizer) followed by its SID
    tokens, and ``prompt_tokens`` come once after the user token (:func:`genrec.data.build_seq2seq_dataset`).

    Attributes:
        item_text_tokens: one token-id list per catalogue item (row = item index); None = SIDs only.
        prompt_tokens: token ids put before the history; None = no prompt.
        item_text_template, max_item_text_tokens, prompt: how they were made (recorded in the bundle and its card).
    """

    item_text_tokens: list[list[int]] | None = None
    prompt_tokens: list[int] | None = None
    item_text_template: str | None = None
    max_item_text_tokens: int | None = None
    prompt: str = ""

    @property
    def dataset_kwargs(self) -> dict:
        """The text arguments of :func:`genrec.data.build_seq2seq_dataset` (only those that are set)."""
        kwargs = {}
        if self.item_text_tokens is not None:
            kwargs["item_text_tokens"] = self.item_text_tokens
        if self.prompt_tokens is not None:
            kwargs["prompt_tokens"] = self.prompt_tokens
        return kwargs

    @classmethod
    def from_lora_config(cls, lora_cfg, items, text_tokenizer) -> TextInputs:
        """What ``recipes/train_genrec.py`` (``build_inputs``) feeds a LoRA model for ``model.lora`` settings ``lora_cfg``.

        Args:
            lora_cfg: a :class:`genrec.models.LoRARecConfig` (or its dict, as a run's ``config.json`` holds it).
            items: the dataset's item table (``RecDataset.items``, catalogue order); only read when the run mixed
                item text into the history (``item_text_template``).
            text_tokenizer: the extended text tokenizer (a run's ``text_tokenizer/``).
        """
        from genrec.config import from_dict
        from genrec.data import item_texts
        from genrec.models.lora import LoRARecConfig

        if isinstance(lora_cfg, dict):
            lora_cfg = from_dict(LoRARecConfig, lora_cfg, "model.lora")
        item_text_tokens = prompt_tokens = None
        if lora_cfg.item_text_template:
            if items is None:
                raise ValueError(f"the run put item text ({lora_cfg.item_text_template!r}) before each history item: "
                                 "its dataset's item table is needed to rebuild the inputs")
            texts = item_texts(items, lora_cfg.item_text_template, on_empty="item_id")
            encoded = text_tokenizer(texts, add_special_tokens=False)["input_ids"]
            item_text_tokens = [list(ids[: lora_cfg.max_item_text_tokens]) for ids in encoded]
        if lora_cfg.prompt:
            prompt_tokens = list(text_tokenizer(lora_cfg.prompt, add_special_tokens=False)["input_ids"])
        return cls(item_text_tokens, prompt_tokens, lora_cfg.item_text_template or None,
                   lora_cfg.max_item_text_tokens if lora_cfg.item_text_template else None, lora_cfg.prompt or "")

    def to_dict(self) -> dict:
        """The JSON part (``inputs`` in ``genrec_config.json``); the item tokens go to :data:`ITEM_TEXT_FILE`."""
        return {"item_text_template": self.item_text_template, "max_item_text_tokens": self.max_item_text_tokens,
                "prompt": self.prompt, "prompt_tokens": self.prompt_tokens,
                "item_text_tokens": None if self.item_text_tokens is None else {
                    "file": ITEM_TEXT_FILE, "count": len(self.item_text_tokens),
                    "tokens": int(sum(len(t) for t in self.item_text_tokens))}}

    def save_item_tokens(self, path: Path) -> None:
        lengths = np.array([len(t) for t in self.item_text_tokens], dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((t for row in self.item_text_tokens for t in row), dtype=np.int64, count=int(offsets[-1]))
        save_file({"values": torch.from_numpy(values), "offsets": torch.from_numpy(offsets)}, str(path),
                  metadata={"format": "genrec-item-text-tokens", "description": "item i: values[offsets[i]:offsets[i+1]]"})

    @staticmethod
    def load_item_tokens(path: Path, num_items: int) -> list[list[int]]:
        try:
            tensors = load_file(str(path))
            values, offsets = tensors["values"].long(), tensors["offsets"].long()
        except (OSError, SafetensorError, KeyError) as e:
            raise ValueError(f"{path}: cannot read the item text tokens ({e}); the file is corrupted or truncated") from e
        if (offsets.ndim != 1 or len(offsets) != num_items + 1 or int(offsets[0]) != 0 or int(offsets[-1]) != len(values)
                or bool((offsets[1:] < offsets[:-1]).any())):
            raise ValueError(f"{path}: expected offsets of {num_items} items into {len(values)} token ids")
        flat, bounds = values.tolist(), offsets.tolist()
        return [flat[bounds[i]:bounds[i + 1]] for i in range(num_items)]


# ---------------------------------------------------------------------------------------------- backends


def _is_peft(model) -> bool:
    return type(model).__module__.startswith("peft.") or hasattr(model, "peft_config")


class ModelBackend:
    """How one ``model_type`` is recognised and loaded. Subclass and add to :data:`MODEL_BACKENDS`.

    Input building and decoding are shared by every type and follow the model's
    ``config.is_encoder_decoder`` (as :func:`~genrec.eval.evaluate.evaluate_generative` does); a backend may
    override :meth:`encode` / :meth:`search`.
    """

    model_type: str = ""

    @staticmethod
    def matches(model) -> bool:
        """Whether an in-memory Hugging Face model is of this type."""
        raise NotImplementedError

    @staticmethod
    def load(folder: Path):
        """The model saved in ``folder`` (Hugging Face layout, safetensors only), in eval mode."""
        raise NotImplementedError

    @staticmethod
    def encode(examples: Examples, item_tokens: torch.Tensor, space: TokenSpace, text: TextInputs | None, *,
               seq2seq: bool, eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` (B, T) for the histories of ``examples``: the recipe's evaluation prompts.

        The rows are :func:`~genrec.data.build_seq2seq_dataset`'s (``[user] + [prompt] + ([item text] + item SID
        tokens) per history item + eos``; no eos for a causal-encoder T5, ``eos=False``) with the recipe's
        arguments, right-padded with the model's pad id; for a decoder-only model they are left-aligned, as in evaluation.
        """
        from genrec.eval.evaluate import left_align

        rows = build_seq2seq_dataset(examples, item_tokens, add_user_token=space.user_token_fn,
                                     eos_id=space.eos_id if eos else None,
                                     **(text.dataset_kwargs if text is not None else {})).to_list()
        batch = Seq2SeqCollator(pad_id=space.pad_id)(rows)
        if seq2seq:
            return batch["input_ids"], batch["attention_mask"]
        return left_align(batch["input_ids"], batch["attention_mask"])

    @staticmethod
    def search(model, input_ids, attention_mask, trie, *, num_beams, top_k, exclude_items, normalization, search="beam",
               max_width=512):
        """``(items, scores)`` (B, top_k), as :func:`~genrec.decoding.constrained_beam_search` returns them
        (``search="exact"``: :func:`~genrec.decoding.exact_top_k`, starting at ``num_beams``)."""
        if search == "exact":
            result = exact_top_k(model, input_ids, attention_mask, trie, top_k, start_width=num_beams,
                                 max_width=max(max_width, num_beams, top_k), exclude_items=exclude_items,
                                 normalization=normalization)
            return result.items, result.scores
        beam = constrained_beam_search if model.config.is_encoder_decoder else constrained_beam_search_causal
        return beam(model, input_ids, attention_mask, trie, num_beams=num_beams, top_k=top_k,
                    exclude_items=exclude_items, normalization=normalization)


class T5Backend(ModelBackend):
    """Encoder-decoder (TIGER): encoder input ``[user] + history SID tokens + </s>``, right-padded."""

    model_type = "t5"

    @staticmethod
    def matches(model) -> bool:
        return bool(model.config.is_encoder_decoder) and not _is_peft(model)

    @staticmethod
    def load(folder: Path):
        from genrec.models.t5 import load_t5

        return load_t5(folder).eval()


class CausalBackend(ModelBackend):
    """Decoder-only causal LM: the same prompt as :class:`T5Backend`, left-aligned."""

    model_type = "causal"

    @staticmethod
    def matches(model) -> bool:
        return not model.config.is_encoder_decoder and not _is_peft(model)

    @staticmethod
    def load(folder: Path):
        from transformers import AutoModelForCausalLM

        check_loadable_folder(folder, "recommenders")
        return AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()


class LoRABackend(ModelBackend):
    """A pretrained LM (seq2seq or decoder-only) + LoRA, on its text tokenizer extended with the SID tokens.

    In memory: the peft model of a run (adapter on its base checkpoint) or the merged model of a bundle.
    Saved: merged (peft ``merge_and_unload``) in the base architecture's Hugging Face layout.
    """

    model_type = "lora"

    @staticmethod
    def matches(model) -> bool:
        return _is_peft(model)

    @staticmethod
    def load(folder: Path):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

        check_loadable_folder(folder, "recommenders")
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        return cls.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()


MODEL_BACKENDS: dict[str, type[ModelBackend]] = {"t5": T5Backend, "causal": CausalBackend, "lora": LoRABackend}


def _backend(model_type: str, where: str) -> type[ModelBackend]:
    if model_type not in MODEL_BACKENDS:
        raise ValueError(f"{where}: unknown model_type {model_type!r}; this genrec supports {sorted(MODEL_BACKENDS)}")
    return MODEL_BACKENDS[model_type]


def _model_type_of(model) -> str:
    for name, backend in MODEL_BACKENDS.items():
        if backend.matches(model):
            return name
    raise ValueError(f"no genrec model backend for {type(model).__name__}")


def _architecture(model) -> str:
    """``"seq2seq"`` or ``"causal"``: how the model is fed and decoded."""
    return "seq2seq" if model.config.is_encoder_decoder else "causal"


# ---------------------------------------------------------------------------------------------- file helpers


def _refuse_pickles(names, where: str) -> None:
    refuse_pickles(names, where, "recommenders")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the file is corrupted or truncated") from e


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


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


# ---------------------------------------------------------------------------------------------- pipeline


class GenerativeRecommender:
    """A trained generative recommender on Semantic IDs: raw item-id histories in, item ids and scores out.

    Build one with :meth:`from_pretrained` (bundle folder, training run folder or Hub repo id), or
    from objects in memory. Save it with :meth:`save_pretrained`, share it with :meth:`push_to_hub`.

    Args:
        model: a Hugging Face model on the SID tokens: ``T5ForConditionalGeneration`` or a causal LM on a
            :class:`SIDVocab`, or (``model_type="lora"``) a pretrained LM with LoRA (a peft model, or merged).
        tokenizer: the :class:`SIDTokenizer` whose SID table the model was trained on (row i = item index i).
        vocab: where the model's SID / user / eos / pad token ids are: the :class:`SIDVocab` of a t5/causal
            model, or a :class:`~genrec.models.TokenSpace` (a run's ``token_space.json``); level sizes must
            equal the tokenizer's.
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
        device: where to run ("cpu", "cuda", "auto"); the model is moved there. None keeps the model where it is
            (:meth:`from_pretrained` defaults to "auto": CUDA when available, else CPU).
    """

    def __init__(self, model, tokenizer: SIDTokenizer, vocab: SIDVocab | TokenSpace, *, max_history: int = 20,
                 generation: GenerationSettings | None = None, popular_items: PopularItems | None = None,
                 user_ids: Sequence[str] | None = None, metrics: dict | None = None, evaluation: dict | None = None,
                 training_data: str | None = None, model_type: str | None = None, text_inputs: TextInputs | None = None,
                 text_tokenizer=None, base_model: str | None = None, device=None):
        space = TokenSpace.from_vocab(vocab) if isinstance(vocab, SIDVocab) else vocab
        if not isinstance(space, TokenSpace):
            raise TypeError(f"vocab must be a SIDVocab or a TokenSpace, got {type(vocab).__name__}")
        if tuple(tokenizer.codebook_sizes) != tuple(space.codebook_sizes):
            raise ValueError(f"the tokenizer's SID levels {tuple(tokenizer.codebook_sizes)} differ from the vocabulary's "
                             f"{tuple(space.codebook_sizes)}: the model was trained on another tokenizer")
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}")
        if model_type is None:
            model_type = "lora" if _is_peft(model) or text_tokenizer is not None else _model_type_of(model)
        self.model_type = model_type
        self.backend = _backend(self.model_type, "GenerativeRecommender")
        if model_type == "lora":
            if text_tokenizer is None:
                raise ValueError("a LoRA recommender needs its text tokenizer (the run's text_tokenizer/ folder: the base "
                                 "model's tokenizer extended with the SID tokens)")
            vocab = None
        elif not isinstance(vocab, SIDVocab):
            # t5 / causal models are built on a SIDVocab; a TokenSpace of that layout is accepted.
            vocab = SIDVocab(space.codebook_sizes, num_user_tokens=space.num_user_tokens)
            if TokenSpace.from_vocab(vocab) != space:
                raise ValueError(f"model_type {model_type!r} uses the SIDVocab token layout, but the token space differs "
                                 f"from it ({space}); a pretrained LM with its own text vocabulary is model_type='lora'")
        needed = max([o + k for o, k in zip(space.level_offsets, space.codebook_sizes, strict=True)]
                     + [(space.user_offset or 0) + space.num_user_tokens, space.eos_id + 1, space.pad_id + 1])
        vocab_size = getattr(model.config, "vocab_size", None)
        if vocab_size is not None and vocab_size < needed:
            what = f"the SID vocabulary's {vocab.size}" if vocab is not None else f"the {needed} its token space needs"
            raise ValueError(f"the model's vocabulary has {vocab_size} tokens, fewer than {what}")
        if text_inputs is not None and text_inputs.item_text_tokens is not None and len(text_inputs.item_text_tokens) != len(tokenizer):
            raise ValueError(f"text_inputs has item text tokens for {len(text_inputs.item_text_tokens)} items, "
                             f"the tokenizer has {len(tokenizer)}")
        self.tokenizer = tokenizer
        self.space = space
        self.vocab = vocab
        self.text_inputs = text_inputs
        self.text_tokenizer = text_tokenizer
        self.base_model = base_model
        self.max_history = int(max_history)
        # Decoder-only search repeats each prompt's KV cache per beam: small batches rank faster (BENCHMARKS.md).
        self.generation = generation or GenerationSettings(batch_size=256 if model.config.is_encoder_decoder else 32)
        self.popular_items = popular_items
        self.user_ids = list(user_ids) if user_ids is not None else None
        self.metrics = metrics
        self.evaluation = evaluation
        self.training_data = training_data
        self.item_ids: list[str] = list(tokenizer.item_ids)
        self._item_index = {item: i for i, item in enumerate(self.item_ids)}
        self._user_index = {u: i for i, u in enumerate(self.user_ids)} if self.user_ids is not None else {}
        self.item_tokens = space.codes_to_tokens(tokenizer.sids)  # (N, D) token ids, row = item index
        self._cpu_trie = PrefixTrie.from_item_tokens(self.item_tokens, level_ranges=space.level_ranges)
        self.model = model.eval()
        self.to(self.device if device is None else device)

    # ---- properties -------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def architecture(self) -> str:
        """``"seq2seq"`` (encoder-decoder) or ``"causal"`` (decoder-only): how inputs are aligned and decoded."""
        return _architecture(self.model)

    def to(self, device) -> GenerativeRecommender:
        """Move the model (and the decoding trie) to ``device`` ("cpu", "cuda", "cuda:1"; None = auto)."""
        device = _resolve_device(device)
        self.model.to(device)
        self.trie = self._cpu_trie.to(device)
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
            "vocab": None if self.vocab is None else self.vocab.to_dict(),
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
                  search: str | None = None) -> list[Recommendation]:
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
                                         search)
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
                exclude_seen: bool, search: str = "beam") -> tuple[torch.Tensor, torch.Tensor]:
        """Item indices and scores (B, k) for B non-empty histories of item indices (-1 / -inf: none)."""
        cut = [h[-self.max_history:] for h in histories]
        lengths = np.array([len(h) for h in cut], dtype=np.int64)
        offsets = np.zeros(len(cut) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        examples = Examples(user_index=np.array([self.user_index(u) for u in users], dtype=np.int64),
                            target=np.zeros(len(cut), dtype=np.int64),  # unused by the encoder input
                            history_values=np.concatenate([np.asarray(h, dtype=np.int64) for h in cut]), history_offsets=offsets)
        input_ids, attention_mask = self.backend.encode(examples, self.item_tokens, self.space, self.text_inputs,
                                                        seq2seq=self.architecture == "seq2seq",
                                                        eos=prompt_eos_id(self.model.config, self.space.eos_id) is not None)
        exclude = [sorted(set(h)) for h in histories] if exclude_seen else None
        items, scores = self.backend.search(self.model, input_ids, attention_mask, self.trie, num_beams=num_beams, top_k=k,
                                            exclude_items=exclude, normalization=self.generation.normalization,
                                            search=search, max_width=self.generation.max_width)
        return items.cpu(), scores.cpu()

    # ---- saving -----------------------------------------------------------------------------------------
    def merged_model(self):
        """The model as a bundle saves it: a peft model's adapter merged into a copy of its base model
        (``merge_and_unload``; the recommender's own model is left as it is), any other model itself."""
        if not _is_peft(self.model):
            return self.model
        return merge_lora(copy.deepcopy(self.model)).eval()

    def _write_files(self, directory: Path, repo_id: str | None, include_user_ids: bool) -> None:
        model = self.merged_model()
        model.save_pretrained(directory / MODEL_DIR, safe_serialization=True)
        _check_saved_weights(model, directory / MODEL_DIR)
        del model
        self.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        if self.text_tokenizer is not None:
            self.text_tokenizer.save_pretrained(directory / TEXT_TOKENIZER_DIR)
        if self.text_inputs is not None and self.text_inputs.item_text_tokens is not None:
            self.text_inputs.save_item_tokens(directory / ITEM_TEXT_FILE)
        if self.popular_items is not None:
            _write_json(directory / POPULAR_FILE, self.popular_items.to_dict())
        config = self.config
        if self.user_ids is not None and include_user_ids:
            _write_json(directory / USERS_FILE, {"user_ids": self.user_ids})
        else:
            config["user_ids"] = None
        build_model_card(config, self.tokenizer.config, repo_id=repo_id).save(directory / CARD_FILE)
        _write_json(directory / CONFIG_FILE, config)

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
        staging.mkdir()
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        try:
            self._write_files(staging, repo_id, include_user_ids)
            if existing:
                os.replace(target, old)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
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
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, tokenizer: SIDTokenizer | str | Path | None = None,
                        device=None, data_dir: str | Path | None = None, base_model: str | Path | None = None,
                        revision: str | None = None, cache_dir: str | Path | None = None, force_download: bool = False,
                        token: str | bool | None = None, local_files_only: bool = False,
                        require_training_data: bool = False) -> GenerativeRecommender:
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
        """
        device = _resolve_device(device)
        path = Path(pretrained_model_name_or_path).expanduser()
        if path.is_dir():
            if revision is not None:
                raise ValueError(f"revision={revision!r} applies to Hub repos, but {path} is a local folder")
            if (path / CONFIG_FILE).is_file():
                return cls._load_bundle(path, str(path), tokenizer=tokenizer, device=device)
            if (path / "best").is_dir() or (path / "vocab.json").is_file() or (path / "token_space.json").is_file():
                return cls.from_run(path, tokenizer=tokenizer, device=device, data_dir=data_dir, base_model=base_model,
                                    load_training_data="required" if require_training_data else True)
            raise FileNotFoundError(f"{path}: neither a genrec recommender bundle (no {CONFIG_FILE}) nor a train_genrec.py "
                                    "run folder (no best/ and token_space.json or vocab.json)")
        folder = _download(str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
                           force_download=force_download, token=token, local_files_only=local_files_only)
        return cls._load_bundle(folder, f"Hub repo {pretrained_model_name_or_path} ({folder})", tokenizer=tokenizer, device=device)

    @classmethod
    def _load_bundle(cls, folder: Path, where: str, *, tokenizer=None, device=None) -> GenerativeRecommender:
        _refuse_pickles([str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()], where)
        for name in REQUIRED_FILES:
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{where}: missing file {name} (a genrec recommender bundle needs {list(REQUIRED_FILES)})")
        config_path = folder / CONFIG_FILE
        config = _read_json(config_path)
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
        backend = _backend(model_type, str(config_path))
        try:
            vocab = SIDVocab.from_dict(config["vocab"]) if config.get("vocab") is not None else None
            space = TokenSpace.from_dict(config["token_space"]) if config.get("token_space") is not None else TokenSpace.from_vocab(vocab)
            generation = GenerationSettings(**config["generation"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{config_path}: invalid vocab, token_space or generation settings: {e}") from e
        if vocab is not None and TokenSpace.from_vocab(vocab) != space:
            raise ValueError(f"{config_path}: vocab and token_space disagree ({TokenSpace.from_vocab(vocab)} vs {space})")
        if model_type != "lora" and vocab is None:
            raise ValueError(f"{config_path}: missing key(s) ['vocab'] (a {model_type} model is built on a SIDVocab)")

        popular = None
        if config.get("popular_items") is not None:
            popular_path = folder / POPULAR_FILE
            if not popular_path.is_file():
                raise FileNotFoundError(f"{where}: missing file {POPULAR_FILE} ({CONFIG_FILE} lists popular items)")
            try:
                popular = PopularItems(**_read_json(popular_path))
            except TypeError as e:
                raise ValueError(f"{popular_path}: expected item_ids, counts, total, source: {e}") from e
        user_ids = None
        if config.get("user_ids") is not None:
            users_path = folder / USERS_FILE
            if not users_path.is_file():
                raise FileNotFoundError(f"{where}: missing file {USERS_FILE} ({CONFIG_FILE} lists training users)")
            users = _read_json(users_path)
            if not isinstance(users, dict) or not isinstance(users.get("user_ids"), list):
                raise ValueError(f"{users_path}: expected a JSON object with a 'user_ids' list")
            user_ids = users["user_ids"]
            if any(not isinstance(u, str) for u in user_ids):
                bad = next(u for u in user_ids if not isinstance(u, str))
                raise ValueError(f"{users_path}: user ids must be strings (they are matched as text), found {bad!r}")

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
            text_tokenizer = _load_text_tokenizer(folder / TEXT_TOKENIZER_DIR)
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
        model = _load_model(backend, folder / MODEL_DIR)
        if model_type == "lora" and lora.get("architecture") not in (None, _architecture(model)):
            raise ValueError(f"{config_path}: lora.architecture is {lora.get('architecture')!r}, but {MODEL_DIR}/ holds a "
                             f"{_architecture(model)} model")
        try:
            return cls(model, tokenizer, space if vocab is None else vocab, max_history=int(config["max_history"]),
                       generation=generation, popular_items=popular, user_ids=user_ids, metrics=config.get("metrics"),
                       evaluation=config.get("evaluation"), training_data=config.get("training_data"), model_type=model_type,
                       text_inputs=text_inputs, text_tokenizer=text_tokenizer, base_model=lora.get("base_model"), device=device)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e

    @classmethod
    def from_run(cls, run_dir: str | Path, *, tokenizer: SIDTokenizer | str | Path | None = None, device=None,
                 data_dir: str | Path | None = None, load_training_data: bool | str = True,
                 base_model: str | Path | None = None) -> GenerativeRecommender:
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
        """
        device = _resolve_device(device)
        run = Path(run_dir)
        check_run_folder(run)
        _refuse_pickles([str(p.relative_to(run)) for p in (run / "best").rglob("*") if p.is_file()], str(run / "best"))
        cfg = _read_json(run / "config.json")
        model_type = _run_model_type(run, cfg)
        vocab = SIDVocab.from_dict(_read_json(run / "vocab.json")) if (run / "vocab.json").is_file() else None
        space = (TokenSpace.from_dict(_read_json(run / "token_space.json")) if (run / "token_space.json").is_file()
                 else TokenSpace.from_vocab(vocab))
        if vocab is not None and TokenSpace.from_vocab(vocab) != space:
            raise ValueError(f"{run}: vocab.json and token_space.json disagree")
        if model_type != "lora" and vocab is None:
            raise FileNotFoundError(f"{run / 'vocab.json'} is missing (a {model_type} run writes it)")
        if tokenizer is None:
            tokenizer_dir = _run_path(run, cfg, cfg.get("tokenizer_dir"))
            if tokenizer_dir is None or not Path(tokenizer_dir).is_dir():
                raise FileNotFoundError(f"{run / 'config.json'}: tokenizer_dir={cfg.get('tokenizer_dir')!r} is not a folder (relative "
                                        "paths are read from the current directory or the training's); pass tokenizer=PATH_OR_REPO_ID")
            try:
                tokenizer = SIDTokenizer.from_pretrained(tokenizer_dir)
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(f"{run}: cannot load the run's tokenizer {tokenizer_dir} ({e}); pass tokenizer= a SIDTokenizer "
                                 "folder or repo id holding the same SID table") from e
        tokenizer = _as_tokenizer(tokenizer)
        metrics_path = run / "metrics.json"
        run_metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
        metrics = {split: run_metrics[split] for split in ("validation", "test") if split in run_metrics} or None
        eval_cfg = cfg.get("eval", {})
        evaluation = {"protocol": "chronological leave-one-out, full-catalogue ranking by trie-constrained beam search",
                      "num_beams": eval_cfg.get("num_beams"), "ks": eval_cfg.get("ks"), "dataset": cfg.get("dataset"),
                      "num_users": run_metrics.get("timings", {}).get("test_users")}
        lora_cfg = ((cfg.get("model") or {}).get("lora") or {}) if model_type == "lora" else {}
        needs_items = bool(lora_cfg.get("item_text_template", "{title}")) if model_type == "lora" else False

        popular, user_ids, training_data, items = None, None, f"{cfg.get('dataset')}", None
        if load_training_data or needs_items:
            try:
                from genrec.data import leave_one_out_split, load_dataset
                from genrec.data.split import cold_item_mask

                dataset = load_dataset(_run_path(run, cfg, cfg["dataset"]), data_dir or _run_path(run, cfg, cfg.get("data_dir")))
                # The run's cold items were never trained on: popular items and training users must not count them.
                cold = cold_item_mask(len(dataset.item_ids), float(cfg.get("cold_item_fraction", 0.0)), int(cfg.get("cold_item_seed", 0)))
                split = (leave_one_out_split(dataset, max_history=int(cfg.get("max_history", 20)), cold_items=cold)
                         if load_training_data else None)
            except (OSError, ValueError, KeyError) as e:
                if load_training_data == "required":
                    raise ValueError(f"{run}: cannot load the run's dataset {cfg.get('dataset')!r} ({e}): pass the data directory "
                                     "(--data-dir / data_dir=); without it the bundle would have no popular items and no "
                                     "training users (--allow-missing-data exports it anyway)") from e
                if needs_items:
                    raise ValueError(f"{run}: cannot load the run's dataset {cfg.get('dataset')!r} ({e}): this LoRA run put item "
                                     f"text ({lora_cfg.get('item_text_template', '{title}')!r}) into its inputs, which needs the "
                                     "dataset's item table; pass data_dir=") from e
                logger.warning("%s: cannot load the run's dataset %r (%s): no popular items (empty_history='popular' "
                               "unavailable) and every user id is hashed to its user token", run, cfg.get("dataset"), e)
            else:
                if list(dataset.item_ids) != list(tokenizer.item_ids):
                    raise ValueError(f"{run}: the tokenizer's items differ from the catalogue of dataset {cfg.get('dataset')!r} "
                                     f"({len(tokenizer)} vs {len(dataset.item_ids)} items, or another order)")
                items = dataset.items
                if split is not None:
                    popular = PopularItems.from_sequences(split.item_ids, split.train_item_sequences())
                    user_ids = split.user_ids
                    training_data = (f"{dataset.name}: {len(split.item_ids)} items, {len(split.user_ids)} users, "
                                     f"{len(dataset.interactions)} interactions (chronological leave-one-out split)")
        text_tokenizer = text_inputs = base_path = None
        if model_type == "lora":
            text_tokenizer = _load_text_tokenizer(run / TEXT_TOKENIZER_DIR)
            text_inputs = TextInputs.from_lora_config(lora_cfg, items, text_tokenizer)
            base_path = _lora_base_path(run, cfg, base_model)
            model = _load_lora_run_model(run, base_path)
        else:
            model = _load_model(_backend(model_type, str(run / "best")), run / "best")
        generation = GenerationSettings(num_beams=int(eval_cfg.get("num_beams", 20)), batch_size=int(eval_cfg.get("batch_size", 256)))
        try:
            return cls(model, tokenizer, vocab if vocab is not None else space, max_history=int(cfg.get("max_history", 20)),
                       generation=generation, popular_items=popular, user_ids=user_ids, metrics=metrics, evaluation=evaluation,
                       training_data=training_data, model_type=model_type, text_inputs=text_inputs, text_tokenizer=text_tokenizer,
                       base_model=None if base_path is None else str(lora_cfg.get("pretrained") or base_path), device=device)
        except ValueError as e:
            raise ValueError(f"{run}: {e}") from e


def _who(user_id: str | None) -> str:
    return "" if user_id is None else f" (user {user_id!r})"


def check_run_folder(run: Path) -> None:
    """Raise FileNotFoundError unless ``run`` holds what a trained ``train_genrec.py`` run leaves:
    ``config.json``, ``best/`` and ``token_space.json`` (runs older than it: ``vocab.json``)."""
    for name in ("config.json", "best"):
        if not (run / name).exists():
            raise FileNotFoundError(f"{run / name} is missing: is {run} a trained train_genrec.py output folder?")
    if not (run / "token_space.json").is_file() and not (run / "vocab.json").is_file():
        raise FileNotFoundError(f"{run}: token_space.json (or vocab.json of older runs) is missing: is {run} a trained "
                                "train_genrec.py output folder?")


def _run_path(run: Path, cfg: dict, value: str | None) -> str | None:
    """A path from a run's config.json: as given if it exists from here, else relative to the training's working directory.

    The recipe writes paths as they were given, often relative to where training ran. That directory is
    recovered from ``output_dir``: the run folder is ``<training cwd>/<output_dir>``.
    """
    if value is None or Path(value).is_absolute() or Path(value).exists():
        return value
    output_dir = Path(cfg.get("output_dir") or "")
    run_parts = run.resolve().parts
    if output_dir.is_absolute() or not output_dir.parts or run_parts[-len(output_dir.parts):] != output_dir.parts:
        return value
    candidate = Path(*run_parts[: -len(output_dir.parts)]) / value
    return str(candidate) if candidate.exists() else value


def _as_tokenizer(tokenizer) -> SIDTokenizer:
    if isinstance(tokenizer, SIDTokenizer):
        return tokenizer
    return SIDTokenizer.from_pretrained(tokenizer)


def _run_model_type(run: Path, cfg: dict) -> str:
    """``model.type`` of a run's config (``t5`` when absent: runs from before it existed), checked against best/."""
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    model_type = model_cfg.get("type", "t5")
    adapter = (run / "best" / "adapter_config.json").is_file()
    if model_type == "lora" or adapter:
        if not adapter:
            raise ValueError(f"{run}: config.json says model.type='lora', but best/ holds no LoRA adapter (adapter_config.json)")
        if model_type != "lora":
            raise ValueError(f"{run}: config.json says model.type={model_type!r}, but best/ holds a LoRA adapter")
        if not (run / TEXT_TOKENIZER_DIR).is_dir():
            raise FileNotFoundError(f"{run / TEXT_TOKENIZER_DIR} is missing: a LoRA run saves its extended text tokenizer there")
        return "lora"
    hf_config = _read_json(run / "best" / "config.json") if (run / "best" / "config.json").is_file() else {}
    if "is_encoder_decoder" in hf_config and bool(hf_config["is_encoder_decoder"]) != (model_type == "t5"):
        raise ValueError(f"{run}: config.json says model.type={model_type!r}, but best/config.json holds a "
                         f"{hf_config.get('model_type')!r} model")
    return model_type


def _load_text_tokenizer(folder: Path):
    """The extended text tokenizer of a LoRA run or bundle (``AutoTokenizer``, local files only)."""
    from transformers import AutoTokenizer

    check_loadable_folder(folder, "recommenders")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{folder}: cannot load the text tokenizer ({e}); the files are missing or corrupted") from e


def _lora_base_path(run: Path, cfg: dict, base_model: str | Path | None) -> Path:
    """The pretrained checkpoint folder of a LoRA run: ``base_model``, else the adapter's
    ``base_model_name_or_path``, else ``model.lora.pretrained`` (relative paths as in :func:`_run_path`)."""
    if base_model is not None:
        candidates = [("base_model", str(base_model))]
    else:
        adapter = _read_json(run / "best" / "adapter_config.json")
        pretrained = ((cfg.get("model") or {}).get("lora") or {}).get("pretrained")
        candidates = [("the adapter's base_model_name_or_path", adapter.get("base_model_name_or_path")),
                      ("model.lora.pretrained", pretrained)]
    for _, value in candidates:
        resolved = _run_path(run, cfg, value) if value else None
        if resolved and Path(resolved).is_dir():
            folder = Path(resolved)
            if not any(folder.glob("*.safetensors")):
                raise ValueError(f"{folder}: the LoRA run's base checkpoint holds no *.safetensors weights; genrec loads "
                                 "models from safetensors only (nothing is unpickled)")
            return folder
    tried = ", ".join(f"{name}={value!r}" for name, value in candidates)
    raise FileNotFoundError(f"{run}: the LoRA run's base checkpoint is not a local folder ({tried}); "
                            "pass base_model=PATH (--base-model) to the pretrained model folder the adapter was trained on")


def _load_lora_run_model(run: Path, base_path: Path):
    """best/ (the adapter) on its base checkpoint, as the recipe's evaluation loads it (:func:`genrec.models.load_model`)."""
    from genrec.models import load_model

    try:
        return load_model(run / "best", tokenizer_dir=run / TEXT_TOKENIZER_DIR, base_path=base_path).eval()
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"{run / 'best'}: cannot load the LoRA adapter on {base_path} ({e})") from e


def _load_model(backend: type[ModelBackend], folder: Path):
    weights = folder / MODEL_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: missing file {MODEL_WEIGHTS} (models are loaded from safetensors only)")
    try:
        return backend.load(folder)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"{folder}: cannot load the {backend.model_type} model ({e}); the files are corrupted or truncated") from e


def _check_saved_weights(model, folder: Path) -> None:
    """Refuse a saved model that would not load back as it is: a weight left out of the file because
    ``transformers`` ties it to another one on load, while the two differ in memory (e.g. a merged LoRA
    model whose embedding copies were trained apart)."""
    path = folder / MODEL_WEIGHTS
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    if not path.is_file() or not tied:
        return
    with safe_open(str(path), "pt") as f:
        saved = set(f.keys())
    state = model.state_dict()
    broken = [f"{target} (tied to {source})" for target, source in tied.items()
              if target not in saved and target in state and source in state and not torch.equal(state[target], state[source])]
    if broken:
        raise ValueError(f"cannot save {type(model).__name__} faithfully: {broken[:4]} differ from the weights they are tied to "
                         "on load, so the saved model would load with other weights")


def _download(repo_id: str, *, revision, cache_dir, force_download: bool, token, local_files_only: bool) -> Path:
    """Snapshot of a bundle's files from a Hub repo (after checking the repo's file list)."""
    patterns = [CONFIG_FILE, CARD_FILE, POPULAR_FILE, USERS_FILE, ITEM_TEXT_FILE, f"{MODEL_DIR}/*.json", f"{MODEL_DIR}/*.safetensors",
                f"{TOKENIZER_DIR}/*.json", f"{TOKENIZER_DIR}/*.safetensors", f"{TOKENIZER_DIR}/{CARD_FILE}",
                f"{TEXT_TOKENIZER_DIR}/*"]  # the text tokenizer's own files (JSON, SentencePiece .model, ...); pickles refused above
    return download_snapshot(repo_id, required=REQUIRED_FILES, allow_patterns=patterns, what="recommenders", revision=revision,
                             cache_dir=cache_dir, force_download=force_download, token=token, local_files_only=local_files_only)


# ---------------------------------------------------------------------------------------------- model card


def _format(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def build_model_card(config: dict, tokenizer_config: dict | None = None, repo_id: str | None = None):
    """README.md of a bundle: YAML metadata (library, tags, ``recommendation_metrics``) + description, metrics, usage."""
    from huggingface_hub import ModelCard, ModelCardData

    metrics = config.get("metrics") or {}
    card_data = ModelCardData(
        library_name="genrec",
        tags=["genrec", "semantic-ids", "recommendation", "generative-recommendation", f"genrec-{config['model_type']}"],
        model_name=repo_id,
        recommendation_metrics={split: dict(values) for split, values in metrics.items()} or None,
        training_data=config.get("training_data") or None,
    )
    vocab = config.get("token_space") or config["vocab"]
    lora = config.get("lora") or {}
    inputs = config.get("inputs") or {}
    gen = config["generation"]
    evaluation = config.get("evaluation") or {}
    name = repo_id or "genrec recommender"
    lines = [
        f"# {name}",
        "",
        f"A generative recommender on Semantic IDs, built with the `genrec` library: a `{config['architecture']}` "
        f"(`model_type: {config['model_type']}`) that generates the SID of a user's next item, decoded by beam search "
        f"constrained to the catalogue's prefix trie, so every recommendation is one of the {config['num_items']:,} "
        f"catalogue items.",
        "",
        f"- SID tokenizer: `{config.get('tokenizer_method')}`, SID levels {vocab['codebook_sizes']} (last = dedup code)"
        + (f", item embeddings from `{tokenizer_config['embedding_model']}`" if (tokenizer_config or {}).get("embedding_model") else ""),
        f"- user tokens: {vocab.get('num_user_tokens', 0)} hashed buckets" + (f" ({config['user_tokens']})" if config.get("user_tokens") else ""),
        f"- input: the last {config['max_history']} known items of a history, oldest first"
        + (f"; each item is its text (`{inputs['item_text_template']}`, at most {inputs['max_item_text_tokens']} tokens) "
           "followed by its SID tokens" if inputs.get("item_text_template") else "")
        + (f"; after the prompt {inputs['prompt']!r}" if inputs.get("prompt") else ""),
    ]
    if config["model_type"] == "lora":
        lines.append(f"- model: the pretrained {lora.get('architecture')} LM `{lora.get('base_model')}` fine-tuned with LoRA "
                     f"(adapter merged into the weights), its text tokenizer extended with the SID tokens (`{TEXT_TOKENIZER_DIR}/`)")
    lines += [
        f"- decoding: {gen['num_beams']} beams, `{gen['normalization']}` normalisation; scores are log P(item | history)",
        "",
        "## Training data",
        "",
        config.get("training_data") or "Not recorded.",
        "",
    ]
    if metrics:
        splits = list(metrics)
        names = sorted({m for values in metrics.values() for m in values})
        lines += ["## Evaluation", "",
                  f"{evaluation.get('protocol') or 'Protocol not recorded'}"
                  + (f"; {evaluation['num_beams']} beams" if evaluation.get("num_beams") else "")
                  + (f"; {evaluation['num_users']:,} test users" if evaluation.get("num_users") else "") + ".", "",
                  "| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        lines += [f"| {m} | " + " | ".join(_format(metrics[s].get(m, "")) for s in splits) + " |" for m in names]
        lines.append("")
    popular = config.get("popular_items")
    lines += [
        "## Usage",
        "",
        "```python",
        "from genrec.pipeline import GenerativeRecommender",
        "",
        f"rec = GenerativeRecommender.from_pretrained({(repo_id or 'path/to/recommender')!r})",
        "out = rec.recommend([history_item_ids], k=10)   # one list of item ids per user, oldest first",
        "out[0].item_ids, out[0].scores",
        "```",
        "",
        "```bash",
        f"genrec recommend --model {repo_id or 'path/to/recommender'} --input histories.json --output recommendations.csv",
        "```",
        "",
        "Unknown item ids in a history are skipped (and counted), or an error with `strict=True` / `--strict`. "
        + ("Empty histories get an error, or with `empty_history=\"popular\"` / `--empty-history popular` the most "
           f"popular training items; popularity = {popular['source']}." if popular
           else "Empty histories get an error (this bundle has no popular items for a fallback)."),
        "",
        "| file | what |",
        "|---|---|",
        f"| `{CONFIG_FILE}` | format version, model type, vocabulary, max history, decoding settings, metrics |",
        f"| `{MODEL_DIR}/` | the model (Hugging Face layout, safetensors) |",
        f"| `{TOKENIZER_DIR}/` | the SID tokenizer (item <-> SID table, quantiser) |",
    ]
    if config["model_type"] == "lora":
        lines.append(f"| `{TEXT_TOKENIZER_DIR}/` | the base model's text tokenizer with the SID and user tokens added |")
    if inputs.get("item_text_tokens"):
        lines.append(f"| `{ITEM_TEXT_FILE}` | the text tokens of every catalogue item, as fed to the model |")
    if popular:
        lines.append(f"| `{POPULAR_FILE}` | the {popular['count']} most frequent training items and their counts |")
    if config.get("user_ids"):
        lines.append(f"| `{USERS_FILE}` | the {config['user_ids']['count']} training users, in training order |")
    lines += ["", "Loading reads JSON and safetensors only: no code is executed and nothing is unpickled.", ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


__all__ = [
    "CONFIG_FILE", "FORMAT_VERSION", "MODEL_BACKENDS", "CausalBackend", "EmptyHistoryError", "GenerationSettings",
    "GenerativeRecommender", "LoRABackend", "ModelBackend", "PopularItems", "Recommendation", "T5Backend", "TextInputs",
    "UnknownItemError", "build_model_card",
]
