"""finetune/train_esr.py end to end on the embedded demo data (SASRec and popularity: no LLM needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _script():
    return load_script("finetune/train_esr.py")


@pytest.mark.parametrize("kind", ["sasrec", "popularity"])
def test_train_script_writes_scorer_and_grouped_results(kind, tmp_path):
    out = tmp_path / kind
    rc = _script().main(["--config", str(REPO / "finetune/configs/esr_demo.yaml"), f"model={kind}",
                         f"output_dir={out}", "train.epochs=2"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == kind and res["mask_history"] is True
    for group in ("overall", "head_users", "tail_users", "head_items", "tail_items"):
        for side in ("exp", "opt", "pes"):  # expected under random tie-breaking first: the headline
            assert set(res["test"][group][side]) == {"ndcg@10", "recall@1", "recall@10", "mrr@10", "mrr"}
    assert res["test"]["head_users"]["n"] + res["test"]["tail_users"]["n"] == res["test"]["overall"]["n"]
    if kind == "sasrec":
        from genrec.esr import FallbackScorer

        assert res["training"]["epochs_run"] == 2 and res["training"]["seconds_per_epoch"] > 0
        scorer = FallbackScorer.load(out / "scorer")
        assert len(scorer.recommend([0, 1, 2], k=5)) == 5
    else:
        from genrec.esr import PopularityScorer

        assert len(PopularityScorer.load(out / "scorer").recommend([], k=3)) == 3


def test_bad_model_kind_is_a_config_error(tmp_path):
    from genrec.errors import ConfigError

    with pytest.raises(ConfigError, match="model must be"):
        _script().main(["--config", str(REPO / "finetune/configs/esr_demo.yaml"), "model=bert4rec",
                        f"output_dir={tmp_path}"])
