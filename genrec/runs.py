"""A trained run's folder, owned in one place: what training writes first (the manifest) and how a run is opened.

A run folder (``output_dir`` of ``recipes/train_genrec.py``) holds:

    run.json          the manifest (this module writes it when training starts): format_version, genrec_version,
                      dataset, data_dir, tokenizer_dir, output_dir, split settings, num_user_tokens, model_type,
                      the model settings, the token layout (token_space), generation settings, ks
    config.json       the recipe's full resolved config (checked on --resume)
    best/             the best model (Hugging Face layout, safetensors; LoRA: the adapter)
    text_tokenizer/   LoRA runs: the base model's text tokenizer extended with the SID tokens
    checkpoints/      resumable training state
    metrics.json      validation and test metrics (written last)

:func:`open_run` reads a run for evaluation (``recipes/evaluate_genrec.py``), serving
(:meth:`genrec.pipeline.GenerativeRecommender.from_run`) and tests. Runs written before the manifest
existed (``config.json`` + ``token_space.json``, or ``vocab.json`` for the oldest) open the same way.

Relative paths in a run (dataset, tokenizer, pretrained checkpoint) are as training was given them: they
are read from the current directory when they exist there, else from the directory training ran in
(recovered from ``output_dir``: the run folder is ``<training cwd>/<output_dir>``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from genrec.config import from_dict
from genrec.data import RecDataset, SplitSettings, load_dataset
from genrec.data.split import SplitData, cold_item_mask, leave_one_out_split
from genrec.decoding import GenerationSettings, PrefixTrie
from genrec.inputs import ModelInputs, build_inputs
from genrec.models.registry import ModelConfig
from genrec.tokenizer import SIDTable
from genrec.training.checkpoint import atomic_write_json
from genrec.vocab import TokenSpace

logger = logging.getLogger(__name__)

MANIFEST_FILE = "run.json"
MANIFEST_VERSION = 1
TEXT_TOKENIZER_DIR = "text_tokenizer"
DEFAULT_KS = (5, 10)


@dataclass
class RunManifest:
    """What a trained run is: enough to rebuild its data, inputs and decoding (``run.json``)."""

    dataset: str
    tokenizer_dir: str
    output_dir: str
    token_space: TokenSpace
    data_dir: str | None = None
    split: SplitSettings = field(default_factory=SplitSettings)
    num_user_tokens: int = 0
    model_type: str = "t5"
    model: dict = field(default_factory=dict)  # the run's ``model`` settings (a ModelConfig as a dict)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    genrec_version: str | None = None
    format_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict:
        out = asdict(self)
        out["token_space"] = self.token_space.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str) -> RunManifest:
        if data.get("format_version") != MANIFEST_VERSION:
            raise ValueError(f"{where}: unsupported format_version {data.get('format_version')!r}; this genrec reads "
                             f"version {MANIFEST_VERSION}")
        try:
            return cls(dataset=data["dataset"], tokenizer_dir=data["tokenizer_dir"], output_dir=data["output_dir"],
                       token_space=TokenSpace.from_dict(data["token_space"]), data_dir=data.get("data_dir"),
                       split=SplitSettings(**data["split"]), num_user_tokens=int(data["num_user_tokens"]),
                       model_type=data["model_type"], model=dict(data.get("model") or {}),
                       generation=GenerationSettings(**data["generation"]), ks=list(data.get("ks") or DEFAULT_KS),
                       genrec_version=data.get("genrec_version"), format_version=data["format_version"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: invalid run manifest ({type(e).__name__}: {e})") from e

    @classmethod
    def from_config(cls, cfg: dict, token_space: TokenSpace) -> RunManifest:
        """From a train_genrec config (``config.json`` as a dict): what the recipe records, and how older runs are read."""
        eval_cfg = cfg.get("eval") or {}
        defaults = GenerationSettings()
        generation = GenerationSettings(
            num_beams=int(eval_cfg.get("num_beams", defaults.num_beams)),
            normalization=eval_cfg.get("normalization", defaults.normalization),
            batch_size=int(eval_cfg.get("batch_size", defaults.batch_size)),
            search=eval_cfg.get("search", defaults.search),
            max_width=int(eval_cfg.get("max_width", eval_cfg.get("exact_max_width", defaults.max_width))))
        split_defaults = SplitSettings()
        split = SplitSettings(int(cfg.get("max_history", split_defaults.max_history)),
                              float(cfg.get("cold_item_fraction", split_defaults.cold_item_fraction)),
                              int(cfg.get("cold_item_seed", split_defaults.cold_item_seed)))
        model = dict(cfg.get("model") or {})
        from genrec import __version__

        return cls(dataset=cfg["dataset"], tokenizer_dir=cfg["tokenizer_dir"], output_dir=cfg.get("output_dir") or "",
                   token_space=token_space, data_dir=cfg.get("data_dir"), split=split,
                   num_user_tokens=int(cfg.get("num_user_tokens", token_space.num_user_tokens)),
                   model_type=model.get("type", "t5"), model=model, generation=generation,
                   ks=list(eval_cfg.get("ks") or DEFAULT_KS), genrec_version=__version__)


def write_manifest(folder: str | Path, manifest: RunManifest) -> Path:
    """Write ``run.json`` into ``folder`` atomically (training does it before the first step)."""
    path = Path(folder) / MANIFEST_FILE
    atomic_write_json(path, manifest.to_dict())
    return path


def check_run_folder(run: Path) -> None:
    """Raise FileNotFoundError unless ``run`` holds what a trained ``train_genrec.py`` run leaves: ``best/`` and
    ``run.json`` (runs older than it: ``config.json`` with ``token_space.json`` or ``vocab.json``)."""
    if not (run / "best").exists():
        raise FileNotFoundError(f"{run / 'best'} is missing: is {run} a trained train_genrec.py output folder?")
    if (run / MANIFEST_FILE).is_file():
        return
    if not (run / "config.json").exists():
        raise FileNotFoundError(f"{run / 'config.json'} is missing: is {run} a trained train_genrec.py output folder?")
    if not (run / "token_space.json").is_file() and not (run / "vocab.json").is_file():
        raise FileNotFoundError(f"{run}: {MANIFEST_FILE} (or token_space.json / vocab.json of older runs) is missing: is {run} "
                                "a trained train_genrec.py output folder?")


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the file is corrupted or truncated") from e


def resolve_run_path(run: Path, output_dir: str | None, value: str | None) -> str | None:
    """A path recorded by a run: as given if it exists from here, else relative to the training's working directory.

    The recipe writes paths as they were given, often relative to where training ran. That directory is
    recovered from ``output_dir``: the run folder is ``<training cwd>/<output_dir>``.
    """
    if value is None or Path(value).is_absolute() or Path(value).exists():
        return value
    output = Path(output_dir or "")
    run_parts = run.resolve().parts
    if output.is_absolute() or not output.parts or run_parts[-len(output.parts):] != output.parts:
        return value
    candidate = Path(*run_parts[: -len(output.parts)]) / value
    return str(candidate) if candidate.exists() else value


def known_keys(cls, data: dict, where: str) -> dict:
    """``data`` without the keys ``cls`` (a config dataclass, recursively) does not have: runs written by an
    older recipe may hold settings that no longer exist; they are dropped with a warning."""
    hints = typing.get_type_hints(cls)
    names = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    out = {}
    for key, value in data.items():
        if key not in names:
            logger.warning("%s: ignoring the unknown setting %r (from an older recipe version?)", where, key)
            continue
        tp = names[key]
        args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (typing.Union, types.UnionType) else []
        tp = args[0] if len(args) == 1 else tp
        out[key] = known_keys(tp, value, f"{where}.{key}") if dataclasses.is_dataclass(tp) and isinstance(value, dict) else value
    return out


def check_tokenizer_holdout(tokenizer_dir: str | Path, item_ids: list[str], cold) -> None:
    """Raise unless the tokenizer's held-out items (``metrics.json: cold_item_ids``) are the run's cold items.

    ``cold``: (num_items,) bool mask of the run's cold items, or None (no cold-start protocol). A tokenizer that
    saw the cold items would leak them into the recommender.
    """
    tokenizer_dir = Path(tokenizer_dir)
    record = tokenizer_dir / "metrics.json"
    held = read_json(record).get("cold_item_ids", []) if record.is_file() else None
    wanted = [item for item, is_cold in zip(item_ids, cold, strict=True) if is_cold] if cold is not None else []
    if cold is not None and held is None:
        raise ValueError(f"{tokenizer_dir}: no metrics.json, so it cannot be checked that the tokenizer held out the "
                         f"{len(wanted)} cold items; train it with recipes/train_tokenizer.py cold_item_fraction=... cold_item_seed=...")
    if held is not None and sorted(held) != sorted(wanted):
        raise ValueError(f"{tokenizer_dir}: the tokenizer held out {len(held)} item(s) but this run holds out {len(wanted)} "
                         f"(cold_item_fraction / cold_item_seed must match the tokenizer's), e.g. tokenizer "
                         f"{sorted(set(held) - set(wanted))[:3]} vs run {sorted(set(wanted) - set(held))[:3]}")


def split_for_run(settings: SplitSettings, dataset: RecDataset, tokenizer_dir: str | Path) -> SplitData:
    """The run's leave-one-out split, after checking that the tokenizer held out exactly the run's cold items."""
    cold = cold_item_mask(len(dataset.item_ids), settings.cold_item_fraction, settings.cold_item_seed)
    check_tokenizer_holdout(tokenizer_dir, dataset.item_ids, cold)
    return leave_one_out_split(dataset, max_history=settings.max_history, cold_items=cold)


def _legacy_token_space(run: Path) -> TokenSpace:
    if (run / "token_space.json").is_file():
        space = TokenSpace.from_dict(read_json(run / "token_space.json"))
        if (run / "vocab.json").is_file() and TokenSpace.from_dict(read_json(run / "vocab.json")) != space:
            raise ValueError(f"{run}: vocab.json and token_space.json disagree")
        return space
    return TokenSpace.from_dict(read_json(run / "vocab.json"))


class TrainedRun:
    """A trained run opened for evaluation or serving (:func:`open_run`); data and inputs are built on first use.

    Attributes:
        folder: the run folder.
        manifest: the run's :class:`RunManifest`, its paths resolved from here.
        config: the recipe's ``config.json`` (a dict; empty when absent).
    """

    def __init__(self, folder: Path, manifest: RunManifest, config: dict, data_dir: str | None = None):
        self.folder = folder
        self.manifest = manifest
        self.config = config
        self.data_dir = data_dir if data_dir is not None else manifest.data_dir
        self._dataset: RecDataset | None = None
        self._split: SplitData | None = None
        self._sid_table: SIDTable | None = None
        self._inputs: ModelInputs | None = None

    def __repr__(self) -> str:
        return f"TrainedRun({str(self.folder)!r}, model_type={self.model_type!r}, dataset={self.manifest.dataset!r})"

    @property
    def model_type(self) -> str:
        return self.manifest.model_type

    @property
    def token_space(self) -> TokenSpace:
        return self.manifest.token_space

    @property
    def generation(self) -> GenerationSettings:
        return self.manifest.generation

    @property
    def model_config(self) -> ModelConfig:
        where = str(self.folder / MANIFEST_FILE)
        return from_dict(ModelConfig, known_keys(ModelConfig, self.manifest.model, f"{where}: model"), f"{where}: model")

    @property
    def best_dir(self) -> Path:
        return self.folder / "best"

    @property
    def text_tokenizer_dir(self) -> Path:
        return self.folder / TEXT_TOKENIZER_DIR

    def metrics(self) -> dict:
        """The run's ``metrics.json`` ({} before training finished)."""
        path = self.folder / "metrics.json"
        return read_json(path) if path.is_file() else {}

    def dataset(self) -> RecDataset:
        if self._dataset is None:
            self._dataset = load_dataset(self.manifest.dataset, self.data_dir)
        return self._dataset

    def split(self) -> SplitData:
        """The run's leave-one-out split, its cold items held out as in training."""
        if self._split is None:
            self._split = split_for_run(self.manifest.split, self.dataset(), self.manifest.tokenizer_dir)
        return self._split

    def sid_table(self) -> SIDTable:
        if self._sid_table is None:
            self._sid_table = SIDTable.load(self.manifest.tokenizer_dir)
            catalogue = self.dataset().item_ids
            if list(self._sid_table.item_ids) != list(catalogue):
                raise ValueError(f"{self.manifest.tokenizer_dir}: the SID table does not cover the catalogue of "
                                 f"'{self.manifest.dataset}' in the same order ({len(self._sid_table.item_ids)} vs "
                                 f"{len(catalogue)} items)")
        return self._sid_table

    def inputs(self) -> ModelInputs:
        """The recipe's own evaluation rows (:func:`genrec.inputs.build_inputs` without a model), checked against the
        run's token layout."""
        if self._inputs is None:
            inputs = build_inputs(self.model_config, self.dataset(), self.split(), self.sid_table(),
                                  num_user_tokens=self.manifest.num_user_tokens, max_history=self.manifest.split.max_history,
                                  with_model=False)
            if inputs.space != self.token_space:
                raise ValueError(f"{self.folder}: the token layout rebuilt from the run's settings ({inputs.space}) differs from "
                                 f"the run's ({self.token_space}); did the pretrained tokenizer change since training?")
            self._inputs = inputs
        return self._inputs

    def trie(self) -> PrefixTrie:
        """The catalogue's prefix trie in the run's token layout."""
        return PrefixTrie.from_item_tokens(self.token_space.codes_to_tokens(self.sid_table().sids),
                                           level_ranges=self.token_space.level_ranges)

    def checked_model_type(self) -> str:
        """The run's ``model_type`` (``t5`` for runs from before it existed), checked against what best/ holds."""
        model_type, best = self.model_type, self.best_dir
        adapter = (best / "adapter_config.json").is_file()
        if model_type == "lora" or adapter:
            if not adapter:
                raise ValueError(f"{self.folder}: config.json says model.type='lora', but best/ holds no LoRA adapter "
                                 "(adapter_config.json)")
            if model_type != "lora":
                raise ValueError(f"{self.folder}: config.json says model.type={model_type!r}, but best/ holds a LoRA adapter")
            if not self.text_tokenizer_dir.is_dir():
                raise FileNotFoundError(f"{self.text_tokenizer_dir} is missing: a LoRA run saves its extended text tokenizer there")
            return "lora"
        hf_config = read_json(best / "config.json") if (best / "config.json").is_file() else {}
        if "is_encoder_decoder" in hf_config and bool(hf_config["is_encoder_decoder"]) != (model_type == "t5"):
            raise ValueError(f"{self.folder}: config.json says model.type={model_type!r}, but best/config.json holds a "
                             f"{hf_config.get('model_type')!r} model")
        return model_type

    def lora_base_path(self, base_model: str | Path | None = None) -> Path:
        """The pretrained checkpoint folder of a LoRA run: ``base_model``, else the adapter's
        ``base_model_name_or_path``, else ``model.lora.pretrained`` (relative paths as :func:`resolve_run_path` reads them)."""
        if base_model is not None:
            candidates = [("base_model", str(base_model))]
        else:
            adapter = read_json(self.best_dir / "adapter_config.json")
            candidates = [("the adapter's base_model_name_or_path", adapter.get("base_model_name_or_path")),
                          ("model.lora.pretrained", self.model_config.lora.pretrained)]
        for _, value in candidates:
            resolved = resolve_run_path(self.folder, self.manifest.output_dir, value) if value else None
            if resolved and Path(resolved).is_dir():
                folder = Path(resolved)
                if not any(folder.glob("*.safetensors")):
                    raise ValueError(f"{folder}: the LoRA run's base checkpoint holds no *.safetensors weights; genrec loads "
                                     "models from safetensors only (nothing is unpickled)")
                return folder
        tried = ", ".join(f"{name}={value!r}" for name, value in candidates)
        raise FileNotFoundError(f"{self.folder}: the LoRA run's base checkpoint is not a local folder ({tried}); "
                                "pass base_model=PATH (--base-model) to the pretrained model folder the adapter was trained on")

    def load_lora_model(self, base_path: Path):
        """best/ (the adapter) on its base checkpoint, as evaluation loads it (:func:`genrec.models.load_model`; not merged)."""
        from safetensors import SafetensorError

        from genrec.models import load_model

        try:
            return load_model(self.best_dir, tokenizer_dir=self.text_tokenizer_dir, base_path=base_path).eval()
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:
            raise ValueError(f"{self.best_dir}: cannot load the LoRA adapter on {base_path} ({e})") from e

    def load_model(self, device: str | torch.device | None = None, base_model: str | Path | None = None):
        """The best model in eval mode on ``device`` (default: CUDA when available, else CPU).

        LoRA runs: the adapter on its base checkpoint (``base_model``, default the run's ``model.lora.pretrained``)
        with the run's ``text_tokenizer/``.
        """
        from genrec.models import load_model

        base_path = None
        if self.model_type == "lora":
            base_path = str(base_model) if base_model is not None else self.model_config.lora.pretrained
            if not base_path or not Path(base_path).is_dir():
                raise FileNotFoundError(f"{self.folder}: the LoRA run's pretrained checkpoint {base_path!r} is not a folder; "
                                        "pass --base-model PATH")
        model = load_model(self.best_dir, tokenizer_dir=self.text_tokenizer_dir, base_path=base_path)
        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return model.to(device).eval()


def open_run(run: str | Path, *, data_dir: str | None = None, base_model: str | Path | None = None) -> TrainedRun:
    """Open a ``train_genrec.py`` output folder: its manifest (or, for older runs, ``config.json`` and its token
    layout file), with recorded paths resolved from here.

    Args:
        data_dir: where the run's dataset is (default: the run's ``data_dir``, then ``$GENREC_DATA_DIR``).
        base_model: LoRA runs whose pretrained checkpoint moved: its folder (replaces ``model.lora.pretrained``).
    """
    run = Path(run)
    check_run_folder(run)
    config = read_json(run / "config.json") if (run / "config.json").is_file() else {}
    if (run / MANIFEST_FILE).is_file():
        manifest = RunManifest.from_dict(read_json(run / MANIFEST_FILE), str(run / MANIFEST_FILE))
    else:
        manifest = RunManifest.from_config(config, _legacy_token_space(run))
    out = manifest.output_dir
    manifest.dataset = resolve_run_path(run, out, manifest.dataset)
    manifest.data_dir = resolve_run_path(run, out, manifest.data_dir)
    manifest.tokenizer_dir = resolve_run_path(run, out, manifest.tokenizer_dir)
    lora = manifest.model.get("lora")
    if isinstance(lora, dict):
        lora = dict(lora)
        for key in ("pretrained", "tokenizer"):
            if lora.get(key):
                lora[key] = resolve_run_path(run, out, lora[key])
        if base_model is not None:
            lora["pretrained"] = str(base_model)
        manifest.model = {**manifest.model, "lora": lora}
    return TrainedRun(run, manifest, config, data_dir)


__all__ = ["MANIFEST_FILE", "RunManifest", "TrainedRun", "check_run_folder", "check_tokenizer_holdout", "open_run",
           "resolve_run_path", "split_for_run", "write_manifest"]
