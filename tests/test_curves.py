"""Loss-curve read-back: resumed steps, windowed means, the cut last line, bad lines named."""

from __future__ import annotations

import json

import pytest

from genrec.errors import ConfigError, DataError
from genrec.training.curves import curves_markdown, read_stage_log, windowed_means
from tests.conftest import load_script


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")


def test_resumed_steps_keep_the_last_record_and_windows_average_exactly(tmp_path):
    rows = [
        {"step": 5, "time": 100.0, "loss": 3.0, "nig": 3.2, "tt": 2.0, "ut": 2.1},
        {"step": 10, "time": 110.0, "loss": 2.0, "nig": 2.2, "tt": 1.0, "ut": 1.1},
        {"step": 10, "time": 300.0, "loss": 1.0, "nig": 1.2, "tt": 0.5, "ut": 0.6},   # resumed run re-logs step 10
        {"step": 10, "time": 301.0, "eval_loss": 1.5, "eval_nig": 1.6, "eval_tt": 0.7, "eval_ut": 0.8},
        {"step": 10, "time": 302.0, "eval_ndcg@10": 0.25},   # the ranking metric comes as its own record
        {"step": 15, "time": 310.0, "loss": 0.5, "nig": 0.7, "tt": 0.25, "ut": 0.35},
    ]
    _write(tmp_path / "metrics.jsonl", rows, tail='{"step": 20, "loss"')   # a line cut by a kill
    log = read_stage_log(tmp_path, name="s1")
    assert [r["step"] for r in log.train] == [5, 10, 15]
    assert log.train[1]["nig"] == 1.2
    assert [r["step"] for r in log.evals] == [10]
    assert log.wall_s == 210.0
    w = windowed_means(log.train, window=10)
    assert [(x["first"], x["step"]) for x in w] == [(1, 10), (11, 15)]  # the last window ends at the last logged step
    assert w[0]["nig"] == pytest.approx((3.2 + 1.2) / 2)
    assert w[0]["ut"] == pytest.approx((2.1 + 0.6) / 2)
    assert w[1]["records"] == 1 and w[1]["tt"] == pytest.approx(0.25)
    md = curves_markdown([log], window=10)
    assert "| s1 | 1–10 | 2.000 | 2.200 | 1.250 | 1.350 |" in md
    assert "| s1 | 10 | 1.500 | 1.600 | 0.700 | 0.800 | 0.250 |" in md


def test_chance_levels_come_from_the_saved_settings(tmp_path):
    import math

    _write(tmp_path / "metrics.jsonl", [{"step": 1, "loss": 1.0, "tt": 3.0}])
    assert read_stage_log(tmp_path).chance() is None  # no train_config.yaml: unknown
    (tmp_path / "train_config.yaml").write_text(
        "batch_size: 8\nloss: {queue_size: 56}\nvalidation: {batch_size: 4}\n", encoding="utf-8")
    log = read_stage_log(tmp_path)
    assert log.negatives == {"tt": (64, 4), "ut": (64, 4)} and log.chance("ut") == (math.log(64), math.log(4))
    (tmp_path / "train_config.yaml").write_text(  # the queue for L_TT only: L_UT's chance is in-batch
        "batch_size: 8\nloss: {queue_size: 56, queue_for: [tt]}\nvalidation: {batch_size: 4}\n", encoding="utf-8")
    log = read_stage_log(tmp_path)
    assert log.chance("tt") == (math.log(64), math.log(4)) and log.chance("ut") == (math.log(8), math.log(4))


def test_a_bad_line_inside_the_log_is_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 5, "loss": 1}\nnot json\n{"step": 10, "loss": 1}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl, line 2"):
        read_stage_log(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1}\n')
    with pytest.raises(DataError, match=r"line 1, field 'step'"):
        read_stage_log(tmp_path)
    with pytest.raises(DataError, match="no training log"):
        read_stage_log(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="window"):
        windowed_means([{"step": 1, "loss": 1.0}], window=0)


def _script():
    return load_script("finetune/loss_curves.py")


def test_the_script_prints_both_stages_and_draws_a_png(tmp_path, capsys):
    for name, base in (("s1", 3.0), ("s2", 2.0)):
        (tmp_path / name).mkdir()
        _write(tmp_path / name / "metrics.jsonl",
               [{"step": s, "time": float(s), "loss": base, "nig": base, "tt": 1.0, "ut": 1.0} for s in (5, 10)])
    png = tmp_path / "curves.png"
    rc = _script().main([f"runs={tmp_path / 's1'},{tmp_path / 's2'}", "window=10", f"png={png}"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| s1 | 1–10 | 3.000 | 3.000 | 1.000 | 1.000 |" in out
    assert "| s2 | 1–10 | 2.000 | 2.000 | 1.000 | 1.000 |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _script().main([]) == 2
    assert "runs: give the stage output_dirs" in capsys.readouterr().err
