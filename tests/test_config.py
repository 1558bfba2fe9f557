from dataclasses import dataclass, field
from pathlib import Path

import pytest

from genrec.config import ConfigError, load_config


@dataclass
class Inner:
    d_model: int = 128
    dropout: float = 0.1


@dataclass
class Outer:
    name: str = "x"
    levels: list[int] = field(default_factory=lambda: [256, 256])
    model: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: beauty\nmodel:\n  d_model: 64\n")
    cfg = load_config(Outer, p, ["model.dropout=0", "levels=[8,8,8]"])
    assert cfg.name == "beauty" and cfg.model.d_model == 64
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)
    assert cfg.levels == [8, 8, 8]


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'd_modle'.*d_model"):
        load_config(Outer, None, ["model.d_modle=3"])


def test_wrong_type_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected int"):
        load_config(Outer, None, ["model.d_model=abc"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")


@dataclass
class WithPrecision:
    mixed_precision: str = "bf16"
    flag: bool = False


def test_yaml_words_stay_strings_on_the_command_line(tmp_path):
    cfg = load_config(WithPrecision, None, ["mixed_precision=no", "flag=true"])
    assert cfg.mixed_precision == "no" and cfg.flag is True
    p = tmp_path / "c.yaml"
    p.write_text("mixed_precision: no\n")
    with pytest.raises(ConfigError, match="quote it"):
        load_config(WithPrecision, p)


BAD_SETTINGS = {
    "eval.num_beams=5": "num_beams \\(5\\) must be >= the largest of ks \\(10\\)",
    "eval.num_beams=-3": "num_beams must be >= 1",
    "eval.ks=[0,10]": "ks must be a non-empty list of cut-offs >= 1",
    "training.metric_for_best=mrr@10": "metric_for_best must be recall@K or ndcg@K",
    "training.metric_for_best=ndcg@20": "needs 20 in eval.ks",
    "training.max_steps=0": "max_steps must be >= 1 or null",
    "training.checkpoint_every_steps=-5": "checkpoint_every_steps must be >= 1 or null",
    "training.warmup_steps=-1": "warmup_steps must be >= 0",
    "training.grad_accum_steps=0": "grad_accum_steps must be >= 1",
    "training.epochs=0": "epochs must be >= 1",
    "training.learning_rate=0": "learning_rate must be > 0",
    "training.lr_scheduler=linear": "lr_scheduler must be one of",
    "training.mixed_precision=fp8": "mixed_precision must be one of",
    "model.num_heads=0": "num_heads must be >= 1",
    "model.dropout_rate=1.5": "dropout_rate must be in \\[0, 1\\)",
    "model.train_targets=every_item": "needs model.encoder=causal",
    "model.causal.num_layers=0": "num_layers must be >= 1",
    "max_history=0": "max_history must be >= 1",
    "cold_item_fraction=1.0": "cold_item_fraction must be in \\[0, 1\\)",
}


@pytest.mark.parametrize("override", sorted(BAD_SETTINGS))
def test_every_invalid_setting_is_refused_when_the_config_is_read(override):
    """Refused by load_config itself, i.e. before any data is loaded or any step is trained."""

    from genrec.recipes import train_genrec

    with pytest.raises(ConfigError, match=BAD_SETTINGS[override]):
        load_config(train_genrec.GenRecConfig, Path(__file__).resolve().parents[1] / "recipes/configs/genrec_beauty.yaml", [override])


CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"
RECIPE_CONFIG_CLASSES = {"genrec_": ("train_genrec", "GenRecConfig"), "sasrec": ("train_sasrec", "SASRecRunConfig"),
                         "tokenizer_": ("train_tokenizer", "TrainTokenizerConfig"),
                         "compare_": ("compare_tokenizers", "CompareConfig")}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_packaged_config_loads_as_its_recipes_config(path):
    """A shipped YAML with a renamed or misspelt key would fail only when someone runs it: read each one here."""
    import importlib

    owners = [owner for prefix, owner in RECIPE_CONFIG_CLASSES.items() if path.stem.startswith(prefix)]
    assert len(owners) == 1, f"{path.name}: no recipe owns this config name"
    module, cls = owners[0]
    load_config(getattr(importlib.import_module(f"genrec.recipes.{module}"), cls), path)


def test_every_config_a_script_names_exists():
    """Shell recipes and benchmarks name their configs by path; a renamed config must not leave one pointing nowhere."""
    import re

    root = CONFIGS.parents[1]
    scripts = [*root.glob("recipes/*.sh"), *root.glob("benchmarks/*.sh"), *root.glob("benchmarks/**/*.py"),
               *root.glob("recipes/configs/*.yaml")]
    named = {(script.name, name) for script in scripts
             for name in re.findall(r"(?:recipes/configs/|config: )([\w.]+\.yaml)", script.read_text())}
    assert any(name == "genrec_beauty_full.yaml" for _, name in named)  # the pattern finds what it should
    missing = sorted(f"{script} -> {name}" for script, name in named if not (CONFIGS / name).is_file())
    assert not missing, missing
