"""YAML → dataclass settings with key=value overrides and clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from genrec.config import load_config
from genrec.errors import ConfigError


@dataclass
class Inner:
    r: int = 8
    modules: list[str] = field(default_factory=lambda: ["q_proj"])


@dataclass
class Outer:
    lr: float = 1e-4
    name: str = "x"
    flag: bool = False
    limit: int | None = None
    lora: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 0.001\nlora:\n  r: 16\n")
    cfg = load_config(Outer, tmp_path / "c.yaml", ["lora.modules=[q_proj, v_proj]", "flag=true", "limit=5"])
    assert cfg == Outer(lr=0.001, flag=True, limit=5, lora=Inner(r=16, modules=["q_proj", "v_proj"]))


def test_unknown_key_names_file_and_key(tmp_path):
    (tmp_path / "c.yaml").write_text("lrr: 1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown setting\(s\) lrr"):
        load_config(Outer, tmp_path / "c.yaml")


def test_bad_type_names_field():
    with pytest.raises(ConfigError, match=r"config.lora.r: expected int"):
        load_config(Outer, None, ["lora.r=abc"])
