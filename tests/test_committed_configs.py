"""Every committed YAML config loads onto the settings class of the script that reads it.

The long runs' configs (CALRec stages, ledger evaluations, bundles) are only read hours into a session
on a machine with the data; a renamed setting would then fail there, or a stale key would sit unread.
Loading each one here, with the same strict loader the scripts use, catches both at test time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genrec.config import load_config
from tests.conftest import REPO, load_script

# (config folder, file-name prefix) -> (script, the settings class it passes to parse_args)
RULES: list[tuple[str, str, str, str]] = [
    ("finetune/configs", "stage", "finetune/train_calrec.py", "ScriptConfig"),
    ("finetune/configs", "demo_stage", "finetune/train_calrec.py", "ScriptConfig"),
    *[("finetune/configs", p, "finetune/train_esr.py", "FallbackSettings")
      for p in ("esr_", "sasrec_", "alpharec_", "darec_", "pad_", "hllm_", "unisrec_", "zeroshot_")],
    ("eval/configs", "experiments_", "eval/run_experiments.py", "ExperimentsConfig"),
    ("eval/configs", "modes_", "eval/evaluate_modes.py", "ModeEvalConfig"),
    ("eval/configs", "reproduce_", "eval/reproduce.py", "ReproduceConfig"),
    ("eval/configs", "scientific", "eval/evaluate.py", "EvalConfig"),
    ("eval/configs", "demo", "eval/evaluate.py", "EvalConfig"),
    ("eval/configs", "beauty_", "eval/evaluate.py", "EvalConfig"),
    ("inference/configs", "bundle_", "inference/make_bundle.py", "BundleConfig"),
    ("inference/configs", "batch_generate", "inference/batch_generate.py", "BatchGenerateConfig"),
    ("inference/configs", "serve", "inference/serve.py", "ServeConfig"),
]
CONFIGS = sorted(p for folder in {r[0] for r in RULES} for p in (REPO / folder).glob("*.yaml"))


def _script_class(script: str, name: str) -> type:
    return getattr(load_script(script), name)


def _rule(config: Path) -> tuple[str, str]:
    folder = str(config.parent.relative_to(REPO))
    matches = [(s, c) for f, prefix, s, c in RULES if f == folder and config.name.startswith(prefix)]
    assert len(matches) == 1, f"{config.relative_to(REPO)}: add its script to RULES in this test"
    return matches[0]


def test_every_config_folder_file_has_a_rule() -> None:
    assert len(CONFIGS) > 30
    for config in CONFIGS:
        _rule(config)


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_committed_config_loads_onto_its_script_settings(config: Path) -> None:
    script, name = _rule(config)
    cls = _script_class(script, name)
    cfg = load_config(cls, config)
    assert isinstance(cfg, cls)


def test_a_stale_key_in_a_committed_config_would_fail(tmp_path: Path) -> None:
    """The check above can fail: the same loader rejects a key the class does not have."""
    from genrec.errors import ConfigError

    text = (REPO / "eval/configs/scientific_last_all_greedy.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "ledger_methods: calrec\n")
    with pytest.raises(ConfigError, match="ledger_methods"):
        load_config(_script_class("eval/evaluate.py", "EvalConfig"), bad)
