"""Model inputs, built one way for every model type: training rows, evaluation prompts and serving prompts.

:func:`build_inputs` is what training and evaluation use (the datasets and collators of a run, from its
model settings, split and SID table); :func:`encode_histories` turns raw histories (item indices) into the
same prompt rows for serving (:class:`genrec.pipeline.GenerativeRecommender`). :class:`TextInputs` is the
text a LoRA run mixes into the input (item titles, a prompt).

Prompt rows (:func:`genrec.data.build_seq2seq_dataset`): ``[user] + [prompt] + ([item text] + item SID
tokens) per history item + eos`` (no eos for a causal-encoder T5), right-padded; decoder-only models
read them left-aligned (:func:`genrec.decoding.search` aligns them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genrec.config import from_dict
from genrec.data import (
    CausalCollator,
    EveryTargetCollator,
    Examples,
    Seq2SeqCollator,
    build_causal_dataset,
    build_causal_window_dataset,
    build_every_target_dataset,
    build_seq2seq_dataset,
    item_texts,
    without_level_loss,
)
from genrec.models.lora import LoRARecConfig
from genrec.models.registry import CAUSAL_TRAIN_TARGETS, ModelConfig, get_backend
from genrec.vocab import TokenSpace

ITEM_TEXT_FILE = "item_text_tokens.safetensors"  # a bundle's item text tokens (LoRA runs that mix titles into the input)


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


@dataclass
class ModelInputs:
    """Everything model-specific about the data of a run: built once, used for training, validation and test."""

    model: torch.nn.Module | None  # None from build_inputs(with_model=False)
    space: TokenSpace
    train_ds: object
    valid_ds: object
    test_ds: object
    train_collator: object
    eval_collator: object
    text_tokenizer: object = None
    text: TextInputs | None = None


def prompt_has_eos(model_cfg: ModelConfig) -> bool:
    """Whether prompts end with eos: all but the causal-encoder T5's (its last row is the inference row) and a
    decoder-only model's with ``model.causal.prompt_eos=false``."""
    if model_cfg.type == "t5" and model_cfg.encoder == "causal":
        return False
    return not (model_cfg.type == "causal" and not model_cfg.causal.prompt_eos)


def build_inputs(model_cfg: ModelConfig, dataset, split, sid_table, *, num_user_tokens: int, max_history: int,
                 with_model: bool = True, dedup_loss: bool = True) -> ModelInputs:
    """Model + datasets + collators for ``model_cfg.type``. Evaluation rows are prompts only for every type.

    Args:
        model_cfg: the run's ``model`` settings.
        dataset: the run's :class:`~genrec.data.RecDataset` (its item table: LoRA item titles).
        split: the run's :class:`~genrec.data.split.SplitData`.
        sid_table: the tokenizer's item -> SID table (row = item index).
        num_user_tokens, max_history: the run's settings.
        with_model: False (evaluating a trained run, whose model is loaded from its folder) leaves
            ``model`` None and, for LoRA, does not load the pretrained checkpoint at all.
        dedup_loss: False leaves the last SID level (the dedup code) out of the training loss (see
            ``GenRecConfig.dedup_loss`` in recipes/train_genrec.py).
    """
    kind = model_cfg.type
    backend = get_backend(kind, "model.type")
    targets = model_cfg.causal.train_targets
    if targets not in CAUSAL_TRAIN_TARGETS:
        raise ValueError(f"model.causal.train_targets must be one of {CAUSAL_TRAIN_TARGETS}, got {targets!r}")
    model, space, text_tokenizer = backend.build(model_cfg, sid_table.codebook_sizes, num_user_tokens, with_model=with_model)
    text = TextInputs.from_lora_config(model_cfg.lora, dataset.items if dataset is not None else None,
                                       text_tokenizer) if kind == "lora" else None
    seq2seq = backend.is_seq2seq(model_cfg)
    item_tokens = space.codes_to_tokens(sid_table.sids)
    common = {"add_user_token": space.user_token_fn, "eos_id": space.eos_id if prompt_has_eos(model_cfg) else None,
              **(text.dataset_kwargs if text is not None else {})}
    train_collator = None
    if kind == "causal" and targets == "every_item":
        train_ds = build_causal_window_dataset(split.train_sequences, item_tokens, space.user_token_fn,
                                               max_history=max_history, eos_id=common["eos_id"])
    elif kind == "t5" and model_cfg.train_targets == "every_item":
        train_ds = build_every_target_dataset(split.train_sequences, item_tokens, space.user_token_fn, max_history=max_history)
        train_collator = EveryTargetCollator(pad_id=space.pad_id)
    else:
        train_ds = (build_seq2seq_dataset if seq2seq else build_causal_dataset)(split.train, item_tokens, **common)
    if not dedup_loss:
        train_ds = without_level_loss(train_ds, *space.level_ranges[-1])
    eval_collator = Seq2SeqCollator(pad_id=space.pad_id)  # prompt rows; search() left-aligns them for causal models
    return ModelInputs(
        model=model, space=space, text_tokenizer=text_tokenizer, text=text,
        train_ds=train_ds,
        valid_ds=build_seq2seq_dataset(split.valid, item_tokens, **common),
        test_ds=build_seq2seq_dataset(split.test, item_tokens, **common),
        train_collator=train_collator or (eval_collator if seq2seq else CausalCollator(pad_id=space.pad_id)),
        eval_collator=eval_collator,
    )


def encode_histories(examples: Examples, item_tokens: torch.Tensor, space: TokenSpace, text: TextInputs | None, *,
                     eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` (B, T) for the histories of ``examples``: the evaluation prompts of :func:`build_inputs`.

    The rows are :func:`~genrec.data.build_seq2seq_dataset`'s with the run's arguments (``eos=False`` for a
    causal-encoder T5), right-padded with the model's pad id (:func:`genrec.decoding.search` left-aligns them for
    a decoder-only model, as in evaluation).
    """
    rows = build_seq2seq_dataset(examples, item_tokens, add_user_token=space.user_token_fn,
                                 eos_id=space.eos_id if eos else None,
                                 **(text.dataset_kwargs if text is not None else {})).to_list()
    batch = Seq2SeqCollator(pad_id=space.pad_id)(rows)
    return batch["input_ids"], batch["attention_mask"]


__all__ = ["ITEM_TEXT_FILE", "ModelInputs", "TextInputs", "build_inputs", "encode_histories", "prompt_has_eos"]
