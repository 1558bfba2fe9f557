"""Tiny synthetic runs for the training tests: a dataset folder, a SID table and small local "pretrained" checkpoints.

Not a test module (no ``test_`` prefix): imported by test_models_causal, test_lora, test_resume and test_distributed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "train_genrec.py"
WORDS = ["red", "blue", "green", "soft", "matte", "gloss", "lip", "balm", "cream", "serum", "oil", "mask", "brush", "gel",
         "tonic", "scrub"]

TINY_T5 = ["model.type=t5", "model.d_model=32", "model.num_layers=1", "model.num_decoder_layers=1", "model.num_heads=2",
           "model.d_kv=16", "model.d_ff=64"]
TINY_CAUSAL = ["model.type=causal", "model.causal.hidden_size=32", "model.causal.num_layers=2", "model.causal.num_heads=2",
               "model.causal.intermediate_size=64", "model.causal.max_position_embeddings=256"]


def make_dataset(root: Path, n_users: int = 48, n_items: int = 30, seed: int = 0) -> tuple[Path, Path]:
    """A dataset folder (``interactions.csv.gz``, ``items.jsonl.gz`` with titles) and a SID table folder.

    Users walk the catalogue with small random steps (item i is mostly followed by i+1 or i+2), so
    there is something to learn. SIDs: item i -> (i % 4, (i // 4) % 4, i // 16), all distinct.
    """
    from genrec.tokenizer import SIDTable

    rng = np.random.default_rng(seed)
    data = root / "tiny_ds"
    data.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        item = int(rng.integers(n_items))
        for t in range(int(rng.integers(4, 9))):
            lines.append(f"u{u},i{item},{1000 * u + t}")
            item = (item + int(rng.integers(1, 3))) % n_items
    with gzip.open(data / "interactions.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    with gzip.open(data / "items.jsonl.gz", "wt") as f:
        for i in range(n_items):
            f.write(json.dumps({"item_id": f"i{i}", "title": f"{WORDS[i % 16]} {WORDS[(i // 2) % 16]} {WORDS[(3 * i) % 16]}"}) + "\n")
    codes = torch.tensor([[i % 4, (i // 4) % 4, i // 16] for i in range(n_items)])
    tok = root / "tiny_tok"
    SIDTable([f"i{i}" for i in range(n_items)], codes, (4, 4, 2)).save(tok)
    return data, tok


def recipe_args(data: Path, tok: Path, out: Path, *extra: str) -> list[str]:
    return [f"dataset={data}", f"tokenizer_dir={tok}", f"output_dir={out}", "num_user_tokens=8", "training.batch_size=16",
            "training.warmup_steps=2", "training.learning_rate=0.01", "training.log_every_steps=1000",
            "eval.num_beams=10", "eval.batch_size=16", *extra]


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def python() -> str:
    return sys.executable


def word_tokenizer(texts: list[str]):
    """A fast word-level tokenizer with ``<pad>``, ``</s>``, ``<unk>`` (a stand-in for an LLM's tokenizer)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.replace(".", " ").split()})
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *words])}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def sentencepiece_t5_tokenizer(texts: list[str]):
    """A T5 tokenizer over a SentencePiece unigram model trained here (pad 0, eos 1, unk 2), as in test_text_tokens."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts * 20), model_writer=buffer, vocab_size=60, model_type="unigram",
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buffer.getvalue())
    return T5Tokenizer(vocab=[(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())], extra_ids=0)


def tiny_pretrained(path: Path, kind: str, seed: int = 0) -> Path:
    """Save a tiny randomly initialised "pretrained" checkpoint (model + tokenizer) to ``path``: llama | qwen2 | t5."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    texts = [f"{a} {b} {c}" for a in WORDS for b in WORDS[:4] for c in WORDS[:2]]
    torch.manual_seed(seed)
    if kind == "t5":
        tokenizer = sentencepiece_t5_tokenizer(texts)
        model = T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1,
                                                    num_heads=2, d_kv=16, dropout_rate=0.0, decoder_start_token_id=0,
                                                    pad_token_id=0, eos_token_id=1))
    else:
        tokenizer = word_tokenizer(texts)
        config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if kind == "llama" else (Qwen2Config, Qwen2ForCausalLM)
        model = model_cls(config_cls(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                     tie_word_embeddings=(kind == "llama"), pad_token_id=0, eos_token_id=1, bos_token_id=1))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
