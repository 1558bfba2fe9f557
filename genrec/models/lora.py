"""A pretrained language model + LoRA (peft) as a SID recommender.

Any local Hugging Face checkpoint folder works: a seq2seq model (T5 with its SentencePiece
tokenizer) or a decoder-only LM (Llama, Qwen2, ...). Steps (:func:`build_lora`):

1. the SID tokens ``<a_12>``, ``<b_3>``, ... (and optional hashed user tokens ``<u_7>``) are added to
   the model's text tokenizer (:func:`genrec.tokenizer.add_sid_tokens`); each level gets a
   contiguous id range, described by a :class:`~genrec.models.tokens.TokenSpace`;
2. the embeddings are grown and the new rows set to the mean of the pretrained rows
   (:func:`resize_model_embeddings`);
3. LoRA adapters are put on the attention projections (peft's default modules for the
   architecture unless ``target_modules`` is given), and the new embedding rows are trained too:
   ``new_embeddings="tokens"`` trains only those rows (peft ``trainable_token_indices``; the input
   and an untied output embedding both), ``"full"`` trains the whole embedding matrices
   (``modules_to_save``, re-pointed by :func:`share_input_embeddings` for models such as T5 that
   reach one embedding under several names, and kept tied to the output layer where the checkpoint
   ties them). Everything else stays frozen.

Inputs may mix text and SIDs: :func:`genrec.data.build_seq2seq_dataset` /
:func:`genrec.data.build_causal_dataset` accept per-item text tokens (e.g. the title) placed before
each history item's SID tokens. Targets are always the ``D`` SID tokens, decoded with the prefix
trie as for the other models.

Saving the best model writes the adapter (``adapter_config.json`` + ``adapter_model.safetensors``,
which also holds the resized embedding matrices); :func:`load_lora_model` rebuilds it from the base
checkpoint and the extended tokenizer saved beside it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from genrec.models.tokens import TokenSpace
from genrec.tokenizer.hub import check_loadable_folder
from genrec.tokenizer.text_tokens import DEFAULT_FORMAT, add_sid_tokens

logger = logging.getLogger(__name__)

USER_TOKEN_FORMAT = "<u_{index}>"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@torch.no_grad()
def resize_model_embeddings(model, tokenizer, init: str = "mean", token_ids=None, pad_to_multiple_of: int | None = None) -> list[int]:
    """Grow ``model``'s input (and untied output) embeddings to hold every token of ``tokenizer``; initialise new rows.

    Resizing goes through the public ``model.resize_token_embeddings``; it never shrinks a matrix
    (T5 checkpoints keep spare rows: 32,128 rows for 32,100 tokens), so added tokens may land on
    rows that already exist.

    Args:
        init: ``"mean"``: every initialised row of the input embeddings is the mean of the other
            (pre-existing) rows, likewise for an untied output layer and its bias, so the model's
            next-token distribution barely moves (Hewitt, 2021); deterministic. ``"sampled"``: keep
            what ``resize_token_embeddings(mean_resizing=True)`` drew (a normal around that mean);
            only rows added by the resize can be initialised this way.
        token_ids: rows to initialise (e.g. ``list(add_sid_tokens(...).values())`` to also reset
            spare rows the new tokens landed on). Default: the rows the resize added.
        pad_to_multiple_of: passed to ``resize_token_embeddings``.

    Returns:
        The sorted row ids that were initialised.
    """
    if init not in ("mean", "sampled"):
        raise ValueError(f"init must be 'mean' or 'sampled', got {init!r}")
    old_rows = model.get_input_embeddings().weight.shape[0]
    target = max(old_rows, len(tokenizer))
    if target > old_rows or pad_to_multiple_of is not None:
        model.resize_token_embeddings(target, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=(init == "sampled"))
    new_rows = model.get_input_embeddings().weight.shape[0]
    rows = sorted({int(i) for i in token_ids}) if token_ids is not None else list(range(old_rows, new_rows))
    if rows and (rows[0] < 0 or rows[-1] >= new_rows):
        raise ValueError(f"token_ids must lie in [0, {new_rows}), got {rows[0]}..{rows[-1]}")
    if init == "sampled":
        if rows and rows[0] < old_rows:
            raise ValueError(f"init='sampled' only initialises rows added by the resize (>= {old_rows}); got row {rows[0]}")
        return rows
    if not rows:
        return rows
    index = torch.tensor(rows)
    keep = torch.ones(new_rows, dtype=torch.bool)
    keep[index] = False
    keep[old_rows:] = False  # rows the resize appended carry no trained values
    if not keep.any():
        raise ValueError("no pre-existing embedding rows are left to average: token_ids cover the whole matrix")
    inputs = model.get_input_embeddings().weight
    inputs[index] = inputs[keep].mean(dim=0).to(inputs.dtype)
    outputs = model.get_output_embeddings()
    if outputs is not None and outputs.weight is not inputs:
        outputs.weight[index] = outputs.weight[keep].mean(dim=0).to(outputs.weight.dtype)
        if getattr(outputs, "bias", None) is not None:
            outputs.bias[index] = outputs.bias[keep].mean().to(outputs.bias.dtype)
    return rows


@dataclass
class LoRARecConfig:
    """A pretrained LM fine-tuned with LoRA. ``pretrained`` is a local checkpoint folder (model + tokenizer)."""

    pretrained: str = ""
    tokenizer: str | None = None  # default: the tokenizer in ``pretrained``
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None = peft's default for the architecture (e.g. q, v)
    new_embeddings: str = "tokens"  # "tokens": train only the added rows | "full": train whole embedding matrices
    sid_token_format: str = DEFAULT_FORMAT
    item_text_template: str | None = "{title}"  # text before each history item's SID (genrec.data.text); None = SIDs only
    max_item_text_tokens: int = 16  # item text is cut to this many tokens
    prompt: str = ""  # text put before the history (e.g. "Recommend the next item."), tokenized once
    dtype: str = "float32"  # weights of the frozen base model: float32 | bfloat16 | float16
    extra_modules_to_save: list[str] = field(default_factory=list)  # more modules trained in full


def is_seq2seq_checkpoint(path: str | Path) -> bool:
    return bool(AutoConfig.from_pretrained(path, trust_remote_code=False).is_encoder_decoder)


def load_base_model(path: str | Path, dtype: str = "float32"):
    """``AutoModelForSeq2SeqLM`` or ``AutoModelForCausalLM`` from a local folder, by its config."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    check_loadable_folder(path, "pretrained checkpoints")
    cls = AutoModelForSeq2SeqLM if is_seq2seq_checkpoint(path) else AutoModelForCausalLM
    return cls.from_pretrained(path, dtype=DTYPES[dtype], trust_remote_code=False)


def add_user_tokens(hf_tokenizer, num_user_tokens: int, fmt: str = USER_TOKEN_FORMAT) -> list[int]:
    """Add ``num_user_tokens`` hashed user tokens ``<u_0>``, ``<u_1>``, ... and return their ids."""
    tokens = [fmt.format(index=i) for i in range(num_user_tokens)]
    if not tokens:
        return []
    hf_tokenizer.add_tokens([AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)
                             for t in tokens])
    ids = hf_tokenizer.convert_tokens_to_ids(tokens)
    encoded = hf_tokenizer(tokens[:3], add_special_tokens=False)["input_ids"]
    if any(e != [i] for e, i in zip(encoded, ids, strict=False)):
        raise ValueError(f"user tokens do not encode to single ids in {type(hf_tokenizer).__name__}: {tokens[0]!r} -> {encoded[0]}")
    return list(ids)


def extend_tokenizer(hf_tokenizer, codebook_sizes, num_user_tokens: int = 0, fmt: str = DEFAULT_FORMAT) -> TokenSpace:
    """Add SID (and user) tokens to ``hf_tokenizer`` in place; the returned :class:`TokenSpace` says where they are."""
    eos = hf_tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"{type(hf_tokenizer).__name__} has no eos token: it ends every prompt; set tokenizer.eos_token")
    pad = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else eos
    sid_ids = add_sid_tokens(hf_tokenizer, codebook_sizes, fmt)
    user_ids = add_user_tokens(hf_tokenizer, num_user_tokens)
    return TokenSpace.from_token_ids(sid_ids, codebook_sizes, eos_id=eos, pad_id=pad, user_token_ids=user_ids)


def new_token_ids(space: TokenSpace) -> list[int]:
    """Every SID and user token id of ``space`` (the rows that are trained)."""
    ids = [o + c for o, k in zip(space.level_offsets, space.codebook_sizes, strict=True) for c in range(k)]
    if space.num_user_tokens:
        ids += list(range(space.user_offset, space.user_offset + space.num_user_tokens))
    return ids


def _module_name(model, module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def wrap_lora(model, cfg: LoRARecConfig, trainable_ids: list[int]):
    """``get_peft_model`` with LoRA on ``cfg.target_modules`` and the ``trainable_ids`` embedding rows trainable."""
    from peft import LoraConfig, get_peft_model

    if cfg.new_embeddings not in ("tokens", "full"):
        raise ValueError(f"new_embeddings must be 'tokens' or 'full', got {cfg.new_embeddings!r}")
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    tied = outputs is None or outputs.weight is inputs.weight
    in_name = _module_name(model, inputs)
    out_name = None if tied else _module_name(model, outputs)
    modules_to_save = list(cfg.extra_modules_to_save)
    trainable_tokens = None
    if cfg.new_embeddings == "tokens":
        # Tied embeddings: one set of rows (peft ties the output layer to it); untied: both matrices' rows.
        trainable_tokens = list(trainable_ids) if tied else {in_name: list(trainable_ids), out_name: list(trainable_ids)}
    else:
        # Both matrices are named even when tied: with ensure_weight_tying peft then wraps the output
        # layer around the input wrapper's trained copy instead of leaving it on the frozen original.
        modules_to_save += [in_name] + ([_module_name(model, outputs)] if outputs is not None else [])
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
                      trainable_token_indices=trainable_tokens, modules_to_save=modules_to_save or None,
                      ensure_weight_tying=cfg.new_embeddings == "full" and outputs is not None and tied)
    peft_model = get_peft_model(model, lora)
    share_input_embeddings(peft_model)
    return peft_model


def share_input_embeddings(peft_model) -> None:
    """Point every user of the input embedding at the module peft wrapped (in place).

    peft wraps a ``modules_to_save`` module under the one name it was given. T5 reaches the same
    embedding under three names (``shared``, ``encoder.embed_tokens``, ``decoder.embed_tokens``), so
    without this its encoder and decoder would keep reading the frozen original while the wrapper's
    trained copy went unused. ``set_input_embeddings`` is the model's own way to re-point all of
    them; for decoder-only models it is a no-op. Only ``modules_to_save`` wrappers need it: peft's
    trainable-token wrappers already follow the model's tied names.
    """
    from peft.utils import ModulesToSaveWrapper

    base = peft_model.get_base_model()
    if isinstance(base.get_input_embeddings(), ModulesToSaveWrapper):
        base.set_input_embeddings(base.get_input_embeddings())


def build_lora(cfg: LoRARecConfig, codebook_sizes, num_user_tokens: int = 0):
    """Load ``cfg.pretrained``, add the SID/user tokens, resize, wrap with LoRA.

    Returns:
        ``(peft_model, text_tokenizer, token_space)``.
    """
    if not cfg.pretrained:
        raise ValueError("model.lora.pretrained must name a local Hugging Face checkpoint folder")
    check_loadable_folder(cfg.tokenizer or cfg.pretrained, "tokenizers")
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.pretrained, trust_remote_code=False)
    space = extend_tokenizer(tokenizer, codebook_sizes, num_user_tokens, cfg.sid_token_format)
    base = load_base_model(cfg.pretrained, cfg.dtype)
    ids = new_token_ids(space)
    resize_model_embeddings(base, tokenizer, token_ids=ids)
    model = wrap_lora(base, cfg, ids)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("LoRA on %s: %d new tokens, %.3fM trainable of %.2fM parameters", cfg.pretrained, len(ids), trainable / 1e6,
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model, tokenizer, space


def merge_lora(peft_model):
    """The adapter merged into its base model (``merge_and_unload``, in place): a plain transformers model.

    peft unwraps a ``modules_to_save`` module under its one name only, so the other names of a
    shared embedding (T5's encoder and decoder ``embed_tokens``) are pointed at the unwrapped copy.
    """
    merged = peft_model.merge_and_unload()
    merged.set_input_embeddings(merged.get_input_embeddings())
    return merged


def load_lora_model(adapter_dir: str | Path, tokenizer_dir: str | Path, base_path: str | Path | None = None, dtype: str = "float32"):
    """Rebuild a trained LoRA recommender: base checkpoint + the extended tokenizer's vocabulary + the adapter.

    ``base_path`` defaults to the adapter's ``base_model_name_or_path``. The saved adapter holds the
    resized embedding matrices, so the new rows get their trained values.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    base_path = base_path or json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    check_loadable_folder(adapter_dir)
    check_loadable_folder(tokenizer_dir, "tokenizers")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    base = load_base_model(base_path, dtype)
    if base.get_input_embeddings().weight.shape[0] < len(tokenizer):
        base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(base, adapter_dir)
    share_input_embeddings(model)
    return model
