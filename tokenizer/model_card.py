"""The README.md model card of a saved :class:`~genrec.tokenizer.artifact.SIDTokenizer`.

The YAML metadata carries what the Hub indexes (``library_name: genrec``, tags ``semantic-ids`` and
``recommendation``) plus two genrec keys: ``tokenizer_metrics`` (the scalar and per-level quality
metrics, computed before the dedup code; nested groups such as timings stay in the JSON config) and
``training_data`` (free-text description of the catalogue the tokenizer was fitted on).
"""

from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

CARD_FILE = "README.md"

# Metrics shown first in the card table, in this order (docs/method.md section 7); others follow by name.
_HEADLINE_METRICS = ("collision_rate", "collided_item_share", "max_group_size", "mean_utilization",
                     "mean_normalized_entropy", "sid_entropy_ratio", "harmful_near_collision_share", "recon_error")


def _card_metrics(metrics: dict | None) -> dict:
    """Numbers, strings and short lists of numbers only (the YAML header stays small and flat).

    Headline metrics first, then the rest by name: the card does not depend on the dict's order.
    """
    metrics = metrics or {}
    out = {}
    for key in [k for k in _HEADLINE_METRICS if k in metrics] + sorted(k for k in metrics if k not in _HEADLINE_METRICS):
        value = metrics[key]
        if isinstance(value, bool) or isinstance(value, (int, float, str)):
            out[key] = value
        elif isinstance(value, list) and len(value) <= 16 and all(isinstance(v, (int, float)) for v in value):
            out[key] = value
    return out


def _format(value) -> str:
    if isinstance(value, float):
        # small shares (e.g. harmful near-collisions, ~1e-5) would print as 0.0000 with a fixed format
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def build_model_card(config: dict, repo_id: str | None = None) -> ModelCard:
    """Model card for a SID tokenizer described by its saved JSON ``config`` (see ``SIDTokenizer.config``)."""
    metrics = _card_metrics(config.get("metrics"))
    method = config["method"]
    card_data = ModelCardData(
        library_name="genrec",
        tags=["genrec", "semantic-ids", "recommendation", "generative-recommendation", f"sid-tokenizer-{method.replace('_', '-')}"],
        model_name=repo_id,
        tokenizer_metrics=metrics or None,
        training_data=config.get("training_data") or None,
    )
    sizes = config["sid_codebook_sizes"]
    name = repo_id or "SID tokenizer"
    lines = [
        f"# {name}",
        "",
        f"A Semantic-ID tokenizer for generative recommendation, built with the `genrec` library: "
        f"method `{method}`, {len(sizes) - 1} quantiser level(s) of sizes {sizes[:-1]} plus one dedup level of size "
        f"{sizes[-1]} (SID length {len(sizes)}), {config['num_items']:,} items.",
        "",
        "## Contents",
        "",
        "| file | what |",
        "|---|---|",
        "| `sid_tokenizer_config.json` | format version, method, quantiser config, codebook sizes, embedding model, text template, metrics |",
        "| `quantizer.safetensors` | quantiser weights and codebooks (and standardisation statistics if any) |",
        "| `sid_table.safetensors` + `sid_items.json` | the full item -> SID table (loading never recomputes IDs) |",
        "",
        "## Item embeddings",
        "",
        f"- embedding model: `{config.get('embedding_model') or 'not recorded'}` ({config.get('embedding_dim')}-d)",
        f"- item text template: `{config.get('text_template') or 'not recorded'}`",
        f"- regularisers: `{config.get('regularizers') or 'none'}`",
        "",
        "## Training data",
        "",
        config.get("training_data") or "Not recorded.",
        "",
    ]
    if metrics:
        lines += ["## Tokenizer quality (before the dedup code)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_format(v)} |" for k, v in metrics.items()]
        lines.append("")
    lines += [
        "## Usage",
        "",
        "```python",
        "from genrec.tokenizer import SIDTokenizer",
        "",
        f"tokenizer = SIDTokenizer.from_pretrained({(repo_id or 'path/to/tokenizer')!r})",
        "tokenizer.sid(item_id)            # the item's SID (tuple of codes)",
        "tokenizer.encode(new_embeddings)  # SIDs for cold-start items, never reusing an existing SID",
        "```",
        "",
        "Loading reads JSON and safetensors only: no code is executed and nothing is unpickled.",
        "",
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


__all__ = ["CARD_FILE", "build_model_card"]
