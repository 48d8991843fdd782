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


def test_script_entry_reports_a_bad_setting_in_one_line(capsys):
    from genrec.config import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(Outer, ["lora.r=abc"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "config.lora.r: expected int" in err and "Traceback" not in err


# -- --help: every setting with its dotted key, type, default and meaning ----------------------
@dataclass
class Commented:
    """Settings whose meanings come from comments and metadata."""

    rate: float = 0.5            # how fast it goes
    # A comment block above a field
    # is its meaning too.
    above: int = 3
    bare: str = "plain"
    meta: int = field(default=2, metadata={"help": "from the field's metadata"})  # metadata wins
    inner: Inner = field(default_factory=lambda: Inner(r=32))  # a nested section
    maybe: Inner | None = None


def test_describe_settings_reads_comments_metadata_and_enclosing_defaults():
    from genrec.config import describe_settings

    rows = {r.key: r for r in describe_settings(Commented)}
    assert rows["rate"].type == "float" and rows["rate"].default == "0.5" and rows["rate"].help == "how fast it goes"
    assert rows["above"].help == "A comment block above a field is its meaning too."
    assert rows["bare"].help == "" and rows["bare"].type == "str" and rows["bare"].default == "plain"
    assert rows["meta"].help == "from the field's metadata"
    assert rows["inner"].type == "section" and rows["inner"].help == "a nested section"
    assert rows["inner.r"].default == "32"  # the enclosing default's value, not Inner's own 8
    assert rows["inner.modules"].type == "list[str]" and rows["inner.modules"].default == "[q_proj]"
    assert rows["maybe"].type == "Inner | None" and rows["maybe"].default == "null"
    assert rows["maybe.r"].default == "8"
    assert list(rows) == ["rate", "above", "bare", "meta", "inner", "inner.r", "inner.modules", "maybe", "maybe.r",
                          "maybe.modules"]


def test_inherited_settings_keep_their_base_class_comments():
    from genrec.config import describe_settings

    @dataclass
    class Child(Commented):
        extra: bool = False  # added by the subclass

    rows = {r.key: r for r in describe_settings(Child)}
    assert rows["rate"].help == "how fast it goes" and rows["extra"].help == "added by the subclass"


def _help(*args: str) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True, cwd=repo, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_train_calrec_help_lists_every_setting_with_its_default():
    import re

    from genrec.config import describe_settings
    from genrec.training import TrainConfig

    text = _help("finetune/train_calrec.py")
    assert re.search(r"^\s+lora\.r\s+int\s+8\s+LoRA rank", text, re.M), text
    assert re.search(r"^\s+validation\.select_best\s+str\s+last\s", text, re.M)
    assert re.search(r"^\s+merge\s+bool\s+false\s+LoRA: also write", text, re.M)  # the script's own settings
    assert re.search(r"^\s+tuning\s+str\s+lora\s+lora \(an adapter\) \| full", text, re.M)
    assert re.search(r"^\s+datasets\[\]\.format\s+str\s+\(required\)", text, re.M)
    for row in describe_settings(TrainConfig):
        assert re.search(rf"^\s+{re.escape(row.key)}(\.\*)?\s", text, re.M), row.key
    assert "--verbose" in text


def test_every_script_and_subcommand_help_lists_its_settings():
    scripts = {"finetune/train_esr.py": "train.epochs", "finetune/loss_curves.py": "window",
               "inference/batch_generate.py": "batch_size", "inference/make_bundle.py": "settings.server.budget_ms",
               "inference/serve.py": "log_dir", "eval/evaluate.py": "generative.bundle"}
    for script, key in scripts.items():
        text = _help(script)
        assert "settings of " in text and f"\n  {key} " in text, (script, text[-2000:])
    from genrec.cli import build_parser

    parser = build_parser()
    for command, key in [("demo", "stage1_steps"), ("bundle", "adapter"), ("evaluate", "sample_users")]:
        sub = parser._subparsers._group_actions[0].choices[command]
        assert f"\n  {key} " in sub.format_help(), command
