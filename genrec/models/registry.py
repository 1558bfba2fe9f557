"""The model types a generative recommender can be, each behind one backend: how it is built, loaded and recognised.

``model.type`` of a recipe config, ``model_type`` of a bundle and of a run manifest name a key of
:data:`MODEL_BACKENDS`:

* ``"t5"``: encoder-decoder on the SID vocabulary (TIGER; :func:`~genrec.models.build_t5`), the T5
  fields of :class:`ModelConfig`;
* ``"causal"``: a Llama/Qwen2-style decoder-only model on the same vocabulary (``model.causal``);
* ``"lora"``: a local pretrained Hugging Face LM + LoRA (``model.lora``), its text tokenizer extended
  with the SID (and user) tokens.

Decoding is the same for every type and follows the model's architecture
(:func:`genrec.decoding.search`). A new type is one :class:`ModelBackend` subclass added to
:data:`MODEL_BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from genrec.config import require
from genrec.models.causal import CausalRecConfig, build_causal
from genrec.models.lora import LoRARecConfig, build_lora, extend_tokenizer
from genrec.models.t5 import T5RecConfig, build_t5
from genrec.tokenizer.hub import check_loadable_folder
from genrec.vocab import TokenSpace

CAUSAL_TRAIN_TARGETS = ("last", "every_item")


@dataclass
class ModelConfig(T5RecConfig):
    """``type`` picks the model; the T5 fields (inherited, top level for older configs) size the t5 model."""

    type: str = "t5"  # "t5" | "causal" | "lora"
    causal: CausalRecConfig = field(default_factory=CausalRecConfig)
    lora: LoRARecConfig = field(default_factory=LoRARecConfig)

    def __post_init__(self):
        super().__post_init__()
        require(self.type in MODEL_BACKENDS, f"model.type must be one of {tuple(MODEL_BACKENDS)}, got {self.type!r}")
        require(self.causal.train_targets in CAUSAL_TRAIN_TARGETS,
                f"model.causal.train_targets must be one of {CAUSAL_TRAIN_TARGETS}, got {self.causal.train_targets!r}")

    def t5(self) -> T5RecConfig:
        return T5RecConfig(**{f.name: getattr(self, f.name) for f in fields(T5RecConfig)})


def is_peft(model) -> bool:
    return type(model).__module__.startswith("peft.") or hasattr(model, "peft_config")


def architecture(model) -> str:
    """``"seq2seq"`` or ``"causal"``: how the model is fed and decoded."""
    return "seq2seq" if model.config.is_encoder_decoder else "causal"


class ModelBackend:
    """How one ``model_type`` is built for training, recognised in memory and loaded from a saved folder."""

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
    def build(cfg: ModelConfig, codebook_sizes, num_user_tokens: int, *, with_model: bool = True):
        """``(model or None, token space, text tokenizer or None)`` for a new run.

        ``with_model=False`` gives the token layout only (evaluating a trained run, whose model comes from its folder).
        """
        raise NotImplementedError

    @staticmethod
    def is_seq2seq(cfg: ModelConfig) -> bool:
        """Whether models built from ``cfg`` are encoder-decoder (prompt rows as encoder input)."""
        raise NotImplementedError


class T5Backend(ModelBackend):
    """Encoder-decoder (TIGER): encoder input ``[user] + history SID tokens + </s>``, right-padded."""

    model_type = "t5"

    @staticmethod
    def matches(model) -> bool:
        return bool(model.config.is_encoder_decoder) and not is_peft(model)

    @staticmethod
    def load(folder: Path):
        from genrec.models.t5 import load_t5

        return load_t5(folder).eval()

    @staticmethod
    def build(cfg: ModelConfig, codebook_sizes, num_user_tokens: int, *, with_model: bool = True):
        space = TokenSpace.sid_layout(codebook_sizes, num_user_tokens)
        return (build_t5(space, cfg.t5()) if with_model else None), space, None

    @staticmethod
    def is_seq2seq(cfg: ModelConfig) -> bool:
        return True


class CausalBackend(ModelBackend):
    """Decoder-only causal LM: the same prompt as :class:`T5Backend`, left-aligned."""

    model_type = "causal"

    @staticmethod
    def matches(model) -> bool:
        return not model.config.is_encoder_decoder and not is_peft(model)

    @staticmethod
    def load(folder: Path):
        from transformers import AutoModelForCausalLM

        check_loadable_folder(folder, "recommenders")
        return AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()

    @staticmethod
    def build(cfg: ModelConfig, codebook_sizes, num_user_tokens: int, *, with_model: bool = True):
        space = TokenSpace.sid_layout(codebook_sizes, num_user_tokens)
        return (build_causal(space, cfg.causal) if with_model else None), space, None

    @staticmethod
    def is_seq2seq(cfg: ModelConfig) -> bool:
        return False


class LoRABackend(ModelBackend):
    """A pretrained LM (seq2seq or decoder-only) + LoRA, on its text tokenizer extended with the SID tokens.

    In memory: the peft model of a run (adapter on its base checkpoint) or the merged model of a bundle.
    Saved: merged (peft ``merge_and_unload``) in the base architecture's Hugging Face layout.
    """

    model_type = "lora"

    @staticmethod
    def matches(model) -> bool:
        return is_peft(model)

    @staticmethod
    def load(folder: Path):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

        check_loadable_folder(folder, "recommenders")
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        return cls.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()

    @staticmethod
    def build(cfg: ModelConfig, codebook_sizes, num_user_tokens: int, *, with_model: bool = True):
        lcfg = cfg.lora
        if with_model:
            model, text_tokenizer, space = build_lora(lcfg, codebook_sizes, num_user_tokens)
            return model, space, text_tokenizer
        from transformers import AutoTokenizer

        text_tokenizer = AutoTokenizer.from_pretrained(lcfg.tokenizer or lcfg.pretrained, trust_remote_code=False)
        space = extend_tokenizer(text_tokenizer, codebook_sizes, num_user_tokens, lcfg.sid_token_format)
        return None, space, text_tokenizer

    @staticmethod
    def is_seq2seq(cfg: ModelConfig) -> bool:
        from genrec.models.lora import is_seq2seq_checkpoint

        return is_seq2seq_checkpoint(cfg.lora.pretrained)


MODEL_BACKENDS: dict[str, type[ModelBackend]] = {"t5": T5Backend, "causal": CausalBackend, "lora": LoRABackend}


def get_backend(model_type: str, where: str = "model_type") -> type[ModelBackend]:
    """The backend of ``model_type``; an error naming ``where`` (the file or setting) for an unknown type."""
    if model_type not in MODEL_BACKENDS:
        raise ValueError(f"{where}: unknown model_type {model_type!r}; this genrec supports {sorted(MODEL_BACKENDS)}")
    return MODEL_BACKENDS[model_type]


def load_saved_model(backend: type[ModelBackend], folder: Path):
    """``backend.load(folder)`` with clear errors: a missing weights file, or files that cannot be read."""
    from safetensors import SafetensorError

    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: missing file model.safetensors (models are loaded from safetensors only)")
    try:
        return backend.load(folder)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"{folder}: cannot load the {backend.model_type} model ({e}); the files are corrupted or truncated") from e


def model_type_of(model) -> str:
    """The ``model_type`` of an in-memory model."""
    for name, backend in MODEL_BACKENDS.items():
        if backend.matches(model):
            return name
    raise ValueError(f"no genrec model backend for {type(model).__name__}")


__all__ = ["CAUSAL_TRAIN_TARGETS", "MODEL_BACKENDS", "CausalBackend", "LoRABackend", "ModelBackend", "ModelConfig", "T5Backend",
           "architecture", "get_backend", "is_peft", "load_saved_model", "model_type_of"]
