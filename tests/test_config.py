from dataclasses import dataclass, field

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
