"""Reload a trained recommender of any type from its saved folder."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from genrec.tokenizer.hub import check_loadable_folder


def load_model(model_dir: str | Path, tokenizer_dir: str | Path | None = None, base_path: str | Path | None = None):
    """The model saved in ``model_dir`` (e.g. a run's ``best/``).

    A full model (T5 or decoder-only recommender) loads with ``AutoModelForSeq2SeqLM`` /
    ``AutoModelForCausalLM`` by its config. A LoRA adapter (``adapter_config.json``) is rebuilt on its
    base checkpoint (``base_path``, default the adapter's ``base_model_name_or_path``) with the
    extended text tokenizer in ``tokenizer_dir`` (a run's ``text_tokenizer/``). Weights load from
    safetensors only, with ``trust_remote_code=False``; a folder holding pickles, ``.py`` files or an
    ``auto_map`` is refused with an error naming the file.
    """
    model_dir = Path(model_dir)
    check_loadable_folder(model_dir)
    if (model_dir / "adapter_config.json").is_file():
        from genrec.models.lora import load_lora_model

        if tokenizer_dir is None:
            raise ValueError(f"{model_dir} holds a LoRA adapter: pass tokenizer_dir (the run's text_tokenizer/ folder)")
        return load_lora_model(model_dir, tokenizer_dir, base_path)
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
