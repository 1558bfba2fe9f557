"""The recommender bundle's format: its files, its model card, downloading and checking it.

A saved recommender (a *bundle*, :meth:`genrec.pipeline.GenerativeRecommender.save_pretrained`) is a folder or
Hub model repo holding JSON and safetensors only (plus the text tokenizer's own files for LoRA models):

    genrec_config.json     format_version, model_type, token_space (and vocab for t5/causal), max_history,
                           generation settings (num_beams, normalization, batch_size, search, max_width), inputs
                           (text mixed into the input), lora (architecture, base model), evaluation metrics,
                           training-data description, which optional files are present
    model/                 the model as Hugging Face ``save_pretrained`` writes it (config.json,
                           generation_config.json, model.safetensors); LoRA: the adapter merged into its
                           base model (peft ``merge_and_unload``), so the bundle needs no base checkpoint
    tokenizer/             the :class:`~genrec.tokenizer.SIDTokenizer` artifact (its own README card)
    text_tokenizer/        LoRA only: the base model's text tokenizer extended with the SID/user tokens
    item_text_tokens.safetensors
                           LoRA runs that mixed item text into the history: the text tokens of every
                           catalogue item (``values`` + ``offsets``, row = item index), exactly as in training
    popular_items.json     optional: the most frequent items of the training data with their counts
                           (the ``empty_history="popular"`` fallback)
    user_ids.json          optional: training users in training order (their user-token buckets)
    warm_items.json        optional: the items with training interactions (every other item is cold)
    item_embeddings.safetensors
                           optional: the items' content vectors (``embeddings``, row = item index) for the
                           "content" cold-start method
    README.md              model card with the evaluation metrics

Loading never unpickles: folders or repos holding ``*.bin``/``*.pt``/``*.pth``/``*.pkl``/``*.pickle``/
``*.ckpt`` files are refused, the weights are read with ``use_safetensors=True``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from genrec.inputs import ITEM_TEXT_FILE
from genrec.runs import read_json
from genrec.tokenizer.hub import check_loadable_folder, download_snapshot

FORMAT_VERSION = 1
CONFIG_FILE = "genrec_config.json"
MODEL_DIR = "model"
TOKENIZER_DIR = "tokenizer"
POPULAR_FILE = "popular_items.json"
USERS_FILE = "user_ids.json"
WARM_ITEMS_FILE = "warm_items.json"  # items with training interactions; every other item is cold (cold-start decoding)
ITEM_EMBEDDINGS_FILE = "item_embeddings.safetensors"  # content vectors, row = item index (cold-start "content" method)
CARD_FILE = "README.md"
TEXT_TOKENIZER_DIR = "text_tokenizer"
MODEL_WEIGHTS = "model.safetensors"
REQUIRED_FILES = (CONFIG_FILE, f"{MODEL_DIR}/config.json", f"{MODEL_DIR}/{MODEL_WEIGHTS}",
                  f"{TOKENIZER_DIR}/sid_tokenizer_config.json", f"{TOKENIZER_DIR}/quantizer.safetensors",
                  f"{TOKENIZER_DIR}/sid_table.safetensors", f"{TOKENIZER_DIR}/sid_items.json")
LORA_REQUIRED_FILES = (f"{TEXT_TOKENIZER_DIR}/tokenizer_config.json",)
# Everything a bundle may hold at its top level (save_pretrained replaces a folder holding only these).
BUNDLE_ENTRIES = (CONFIG_FILE, MODEL_DIR, TOKENIZER_DIR, TEXT_TOKENIZER_DIR, ITEM_TEXT_FILE, POPULAR_FILE, USERS_FILE,
                  WARM_ITEMS_FILE, ITEM_EMBEDDINGS_FILE, CARD_FILE)


NUM_POPULAR_ITEMS = 1000
POPULARITY_SOURCE = ("item counts over the training part of the chronological leave-one-out split (every user's "
                     "interactions except the last two, so validation and test targets are not counted)")


@dataclass
class PopularItems:
    """The most frequent items of the training data (the empty-history fallback).

    Attributes:
        item_ids: most frequent first (ties: catalogue order).
        counts: their interaction counts.
        total: number of interactions counted (scores are ``log(count / total)``).
        source: where the counts come from (recorded in the bundle and its card).
    """

    item_ids: list[str]
    counts: list[int]
    total: int
    source: str = POPULARITY_SOURCE

    def __post_init__(self):
        if len(self.item_ids) != len(self.counts):
            raise ValueError(f"popular items: {len(self.item_ids)} ids but {len(self.counts)} counts")
        if self.total < sum(self.counts) or any(c < 1 for c in self.counts):
            raise ValueError("popular items: counts must be >= 1 and sum to at most total")

    @classmethod
    def from_sequences(cls, item_ids: Sequence[str], sequences: Sequence[Sequence[int]], top: int = NUM_POPULAR_ITEMS,
                       source: str = POPULARITY_SOURCE) -> PopularItems:
        """Count item indices over ``sequences`` (e.g. ``SplitData.train_item_sequences()``) and keep the ``top``."""
        counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else
                             np.zeros(0, dtype=np.int64), minlength=len(item_ids))
        order = np.lexsort((np.arange(len(counts)), -counts))  # count descending, ties by catalogue index
        order = [int(i) for i in order[:top] if counts[i] > 0]
        return cls([item_ids[i] for i in order], [int(counts[i]) for i in order], int(counts.sum()), source)

    def top(self, k: int) -> tuple[list[str], list[float]]:
        return self.item_ids[:k], [math.log(c / self.total) for c in self.counts[:k]]

    def to_dict(self) -> dict:
        return asdict(self)


def read_popular_items(folder: Path, where: str) -> PopularItems:
    """The bundle's :data:`POPULAR_FILE` (listed in its config)."""
    path = folder / POPULAR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{where}: missing file {POPULAR_FILE} ({CONFIG_FILE} lists popular items)")
    try:
        return PopularItems(**read_json(path))
    except TypeError as e:
        raise ValueError(f"{path}: expected item_ids, counts, total, source: {e}") from e


def read_warm_items(folder: Path, where: str) -> list[str]:
    """The bundle's :data:`WARM_ITEMS_FILE` (listed in its config): the items with training interactions."""
    path = folder / WARM_ITEMS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{where}: missing file {WARM_ITEMS_FILE} ({CONFIG_FILE} lists warm items)")
    warm = read_json(path)
    if not isinstance(warm, dict) or not isinstance(warm.get("item_ids"), list) or \
            not all(isinstance(i, str) for i in warm["item_ids"]):
        raise ValueError(f"{path}: expected a JSON object with an 'item_ids' list of strings")
    return warm["item_ids"]


def write_item_embeddings(path: Path, embeddings: torch.Tensor) -> None:
    """Write ``(N, d)`` content vectors (row = item index) as :data:`ITEM_EMBEDDINGS_FILE` (tensor ``embeddings``)."""
    from safetensors.torch import save_file

    save_file({"embeddings": embeddings.detach().to("cpu", torch.float32).contiguous()}, str(path))


def read_item_embeddings(folder: Path, where: str, num_items: int) -> torch.Tensor:
    """The bundle's :data:`ITEM_EMBEDDINGS_FILE` (listed in its config): ``(num_items, d)`` float32, finite."""
    path = folder / ITEM_EMBEDDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{where}: missing file {ITEM_EMBEDDINGS_FILE} ({CONFIG_FILE} lists item embeddings)")
    with safe_open(str(path), framework="pt") as f:
        if "embeddings" not in f.keys():
            raise ValueError(f"{path}: expected a tensor 'embeddings', found {list(f.keys())}")
        embeddings = f.get_tensor("embeddings")
    if embeddings.ndim != 2 or len(embeddings) != num_items:
        raise ValueError(f"{path}: expected ({num_items}, d) item embeddings (one row per catalogue item), "
                         f"got shape {tuple(embeddings.shape)}")
    if not torch.isfinite(embeddings).all():
        raise ValueError(f"{path}: item embeddings hold non-finite values")
    return embeddings.float()


def read_user_ids(folder: Path, where: str) -> list[str]:
    """The bundle's :data:`USERS_FILE` (listed in its config): training users in training order."""
    path = folder / USERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{where}: missing file {USERS_FILE} ({CONFIG_FILE} lists training users)")
    users = read_json(path)
    if not isinstance(users, dict) or not isinstance(users.get("user_ids"), list):
        raise ValueError(f"{path}: expected a JSON object with a 'user_ids' list")
    bad = [u for u in users["user_ids"] if not isinstance(u, str)]
    if bad:
        raise ValueError(f"{path}: user ids must be strings (they are matched as text), found {bad[0]!r}")
    return users["user_ids"]


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_text_tokenizer(folder: Path):
    """The extended text tokenizer of a LoRA run or bundle (``AutoTokenizer``, local files only)."""
    from transformers import AutoTokenizer

    check_loadable_folder(folder, "recommenders")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{folder}: cannot load the text tokenizer ({e}); the files are missing or corrupted") from e


def check_saved_weights(model, folder: Path) -> None:
    """Refuse a saved model that would not load back as it is: a weight left out of the file because
    ``transformers`` ties it to another one on load, while the two differ in memory (e.g. a merged LoRA
    model whose embedding copies were trained apart)."""
    path = folder / MODEL_WEIGHTS
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    if not path.is_file() or not tied:
        return
    with safe_open(str(path), "pt") as f:
        saved = set(f.keys())
    state = model.state_dict()
    broken = [f"{target} (tied to {source})" for target, source in tied.items()
              if target not in saved and target in state and source in state and not torch.equal(state[target], state[source])]
    if broken:
        raise ValueError(f"cannot save {type(model).__name__} faithfully: {broken[:4]} differ from the weights they are tied to "
                         "on load, so the saved model would load with other weights")


def download_bundle(repo_id: str, *, revision, cache_dir, force_download: bool, token, local_files_only: bool) -> Path:
    """Snapshot of a bundle's files from a Hub repo (after checking the repo's file list)."""
    patterns = [CONFIG_FILE, CARD_FILE, POPULAR_FILE, USERS_FILE, ITEM_TEXT_FILE, f"{MODEL_DIR}/*.json", f"{MODEL_DIR}/*.safetensors",
                f"{TOKENIZER_DIR}/*.json", f"{TOKENIZER_DIR}/*.safetensors", f"{TOKENIZER_DIR}/{CARD_FILE}",
                f"{TEXT_TOKENIZER_DIR}/*"]  # the text tokenizer's own files (JSON, SentencePiece .model, ...); pickles refused above
    return download_snapshot(repo_id, required=REQUIRED_FILES, allow_patterns=patterns, what="recommenders", revision=revision,
                             cache_dir=cache_dir, force_download=force_download, token=token, local_files_only=local_files_only)


# ---------------------------------------------------------------------------------------------- model card


def _format_value(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def build_model_card(config: dict, tokenizer_config: dict | None = None, repo_id: str | None = None):
    """README.md of a bundle: YAML metadata (library, tags, ``recommendation_metrics``) + description, metrics, usage."""
    from huggingface_hub import ModelCard, ModelCardData

    metrics = config.get("metrics") or {}
    card_data = ModelCardData(
        library_name="genrec",
        tags=["genrec", "semantic-ids", "recommendation", "generative-recommendation", f"genrec-{config['model_type']}"],
        model_name=repo_id,
        recommendation_metrics={split: dict(values) for split, values in metrics.items()} or None,
        training_data=config.get("training_data") or None,
    )
    vocab = config.get("token_space") or config["vocab"]
    lora = config.get("lora") or {}
    inputs = config.get("inputs") or {}
    gen = config["generation"]
    evaluation = config.get("evaluation") or {}
    name = repo_id or "genrec recommender"
    lines = [
        f"# {name}",
        "",
        f"A generative recommender on Semantic IDs, built with the `genrec` library: a `{config['architecture']}` "
        f"(`model_type: {config['model_type']}`) that generates the SID of a user's next item, decoded by beam search "
        f"constrained to the catalogue's prefix trie, so every recommendation is one of the {config['num_items']:,} "
        f"catalogue items.",
        "",
        f"- SID tokenizer: `{config.get('tokenizer_method')}`, SID levels {vocab['codebook_sizes']} (last = dedup code)"
        + (f", item embeddings from `{tokenizer_config['embedding_model']}`" if (tokenizer_config or {}).get("embedding_model") else ""),
        f"- user tokens: {vocab.get('num_user_tokens', 0)} hashed buckets" + (f" ({config['user_tokens']})" if config.get("user_tokens") else ""),
        f"- input: the last {config['max_history']} known items of a history, oldest first"
        + (f"; each item is its text (`{inputs['item_text_template']}`, at most {inputs['max_item_text_tokens']} tokens) "
           "followed by its SID tokens" if inputs.get("item_text_template") else "")
        + (f"; after the prompt {inputs['prompt']!r}" if inputs.get("prompt") else ""),
    ]
    if config["model_type"] == "lora":
        lines.append(f"- model: the pretrained {lora.get('architecture')} LM `{lora.get('base_model')}` fine-tuned with LoRA "
                     f"(adapter merged into the weights), its text tokenizer extended with the SID tokens (`{TEXT_TOKENIZER_DIR}/`)")
    lines += [
        f"- decoding: {gen['num_beams']} beams, `{gen['normalization']}` normalisation; scores are log P(item | history)",
        "",
        "## Training data",
        "",
        config.get("training_data") or "Not recorded.",
        "",
    ]
    if metrics:
        splits = list(metrics)
        names = sorted({m for values in metrics.values() for m in values})
        lines += ["## Evaluation", "",
                  f"{evaluation.get('protocol') or 'Protocol not recorded'}"
                  + (f"; {evaluation['num_beams']} beams" if evaluation.get("num_beams") else "")
                  + (f"; {evaluation['num_users']:,} test users" if evaluation.get("num_users") else "") + ".", "",
                  "| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        lines += [f"| {m} | " + " | ".join(_format_value(metrics[s].get(m, "")) for s in splits) + " |" for m in names]
        lines.append("")
    popular = config.get("popular_items")
    lines += [
        "## Usage",
        "",
        "```python",
        "from genrec.pipeline import GenerativeRecommender",
        "",
        f"rec = GenerativeRecommender.from_pretrained({(repo_id or 'path/to/recommender')!r})",
        "out = rec.recommend([history_item_ids], k=10)   # one list of item ids per user, oldest first",
        "out[0].item_ids, out[0].scores",
        "```",
        "",
        "```bash",
        f"genrec recommend --model {repo_id or 'path/to/recommender'} --input histories.json --output recommendations.csv",
        "```",
        "",
        "Unknown item ids in a history are skipped (and counted), or an error with `strict=True` / `--strict`. "
        + ("Empty histories get an error, or with `empty_history=\"popular\"` / `--empty-history popular` the most "
           f"popular training items; popularity = {popular['source']}." if popular
           else "Empty histories get an error (this bundle has no popular items for a fallback)."),
        "",
        "| file | what |",
        "|---|---|",
        f"| `{CONFIG_FILE}` | format version, model type, vocabulary, max history, decoding settings, metrics |",
        f"| `{MODEL_DIR}/` | the model (Hugging Face layout, safetensors) |",
        f"| `{TOKENIZER_DIR}/` | the SID tokenizer (item <-> SID table, quantiser) |",
    ]
    if config["model_type"] == "lora":
        lines.append(f"| `{TEXT_TOKENIZER_DIR}/` | the base model's text tokenizer with the SID and user tokens added |")
    if inputs.get("item_text_tokens"):
        lines.append(f"| `{ITEM_TEXT_FILE}` | the text tokens of every catalogue item, as fed to the model |")
    if popular:
        lines.append(f"| `{POPULAR_FILE}` | the {popular['count']} most frequent training items and their counts |")
    if config.get("user_ids"):
        lines.append(f"| `{USERS_FILE}` | the {config['user_ids']['count']} training users, in training order |")
    lines += ["", "Loading reads JSON and safetensors only: no code is executed and nothing is unpickled.", ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


__all__ = ["NUM_POPULAR_ITEMS", "POPULARITY_SOURCE", "PopularItems", "read_popular_items", "read_user_ids", "read_warm_items", "WARM_ITEMS_FILE",
           "ITEM_EMBEDDINGS_FILE", "read_item_embeddings", "write_item_embeddings", "BUNDLE_ENTRIES", "CARD_FILE", "CONFIG_FILE", "FORMAT_VERSION", "ITEM_TEXT_FILE", "LORA_REQUIRED_FILES", "MODEL_DIR",
           "MODEL_WEIGHTS", "POPULAR_FILE", "REQUIRED_FILES", "TEXT_TOKENIZER_DIR", "TOKENIZER_DIR", "USERS_FILE",
           "build_model_card", "check_saved_weights", "download_bundle", "load_text_tokenizer", "read_json", "write_json"]
