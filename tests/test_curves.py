"""Loss-curve read-back: resumed steps, windowed means, the cut last line, bad lines named."""

from __future__ import annotations

import json

import pytest

from genrec.errors import DataError
from genrec.training.curves import curves_markdown, read_stage_log, windowed_means


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
    assert [x["step"] for x in w] == [10, 20]
    assert w[0]["nig"] == pytest.approx((3.2 + 1.2) / 2)
    assert w[0]["ut"] == pytest.approx((2.1 + 0.6) / 2)
    assert w[1]["records"] == 1 and w[1]["tt"] == pytest.approx(0.25)
    md = curves_markdown([log], window=10)
    assert "| s1 | 1–10 | 2.000 | 2.200 | 1.250 | 1.350 |" in md
    assert "| s1 | 10 | 1.500 | 1.600 | 0.700 | 0.800 | 0.250 |" in md


def test_a_bad_line_inside_the_log_is_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 5, "loss": 1}\nnot json\n{"step": 10, "loss": 1}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl, line 2"):
        read_stage_log(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1}\n')
    with pytest.raises(DataError, match=r"line 1, field 'step'"):
        read_stage_log(tmp_path)
    with pytest.raises(DataError, match="no training log"):
        read_stage_log(tmp_path / "nowhere")
