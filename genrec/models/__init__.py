from genrec.models.causal import CausalRecConfig, build_causal
from genrec.models.loading import load_model
from genrec.models.lora import LoRARecConfig, build_lora, load_lora_model, resize_model_embeddings
from genrec.models.sasrec import SASRecConfig, build_sasrec
from genrec.models.t5 import T5RecConfig, build_t5
from genrec.models.tokens import TokenSpace

__all__ = ["CausalRecConfig", "LoRARecConfig", "SASRecConfig", "T5RecConfig", "TokenSpace", "build_causal", "build_lora",
           "build_sasrec", "build_t5", "load_lora_model", "load_model",
           "resize_model_embeddings"]
