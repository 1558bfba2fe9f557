"""Pretrain a small text language model on a dataset's item texts, saved as a local Hugging Face checkpoint.

    python benchmarks/pretrain_text_lm.py --dataset amazon_beauty --out runs/beauty/text_lm --minutes 20
    python recipes/train_genrec.py --config recipes/configs/genrec_beauty_lora.yaml \\
        model.lora.pretrained=runs/beauty/text_lm tokenizer_dir=runs/beauty/tokenizer

The LoRA recommender (``model.type=lora``) loads any local checkpoint folder; with no network there
is no Hub model to start from, so this script makes one: a byte-level BPE tokenizer (``tokenizers``)
and a small Llama (``LlamaForCausalLM``) trained with next-token prediction on the item texts
(title, brand, categories; the same template as the SID tokenizer's embeddings), for a fixed wall
time. It is a stand-in for a real pretrained LM (e.g. a Qwen2/Llama/T5 folder copied onto the
machine): small, domain-only, and short-trained; say so next to any number it produces.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from genrec.data import item_texts, load_dataset


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", bos_token="</s>")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="amazon_beauty")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=20.0, help="training wall time")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64, help="item texts are cut to this many tokens")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)

    dataset = load_dataset(args.dataset, args.data_dir)
    texts = item_texts(dataset.items, on_empty="item_id")
    tokenizer = train_tokenizer(texts, args.vocab_size)
    rows = [ids[: args.max_tokens - 1] + [tokenizer.eos_token_id] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size, intermediate_size=4 * args.hidden_size,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
                         max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # length-sorted batches, shuffled
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    start, step, epoch, losses = time.perf_counter(), 0, 0, []
    model.train()
    while time.perf_counter() - start < 60 * args.minutes:
        for b in torch.randperm(len(batches)).tolist():
            width = max(len(rows[i]) for i in batches[b])
            ids = torch.full((len(batches[b]), width), tokenizer.pad_token_id)
            for j, i in enumerate(batches[b]):
                ids[j, : len(rows[i])] = torch.tensor(rows[i])
            mask = (torch.arange(width)[None, :] < torch.tensor([len(rows[i]) for i in batches[b]])[:, None]).long()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if step % 100 == 0:
                print(f"epoch {epoch} step {step}: loss {sum(losses[-100:]) / 100:.3f}", flush=True)
            if time.perf_counter() - start >= 60 * args.minutes:
                break
        epoch += 1
    out = Path(args.out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"dataset": args.dataset, "items": len(texts), "steps": step, "epochs": epoch, "minutes": args.minutes,
            "final_loss": sum(losses[-100:]) / max(1, len(losses[-100:])), "perplexity": math.exp(sum(losses[-100:]) / max(1, len(losses[-100:]))),
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer), "date": time.strftime("%Y-%m-%d")}
    (out / "pretraining.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    main()
