"""The results ledger: means and stds over seeds by hand, merging, and the experiments runner on demo data."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest

from genrec.ledger import backfill_expected, entry_from_reports, format_entries, read_ledger, update_ledger
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _report(ndcg: float, tail: float, n: int = 100, expected: bool = True) -> dict:
    side = {"ndcg@10": ndcg, "recall@10": 2 * ndcg, "recall@1": ndcg / 2, "mrr@10": ndcg * 0.8, "mrr": ndcg * 0.9}
    groups = {g: {"n": n // 2, "opt": {**side, "ndcg@10": tail}, "pes": {**side, "ndcg@10": tail - 0.01},
                  "exp": {**side, "ndcg@10": tail - 0.004}}
              for g in ("head_users", "tail_users", "head_items", "tail_items")}
    report = {"overall": {"n": n, "opt": side, "pes": {**side, "ndcg@10": ndcg - 0.001},
                          "exp": {**side, "ndcg@10": ndcg - 0.0005}}, **groups}
    if not expected:  # a report written before the expected side existed
        for g in report.values():
            del g["exp"]
    return report


def test_entry_is_the_mean_over_seeds_with_sample_std():
    e = entry_from_reports([_report(0.07, 0.03), _report(0.08, 0.05)], [1, 2], "c.yaml", "python x")
    assert e["ndcg@10"] == pytest.approx(0.075) and e["recall@10"] == pytest.approx(0.15)
    assert e["ndcg@10_pes"] == pytest.approx(0.074) and e["ndcg@10_expected"] == pytest.approx(0.0745)
    assert e["mrr@10_expected"] == pytest.approx(0.06) and e["tail_items_ndcg@10_expected"] == pytest.approx(0.036)
    assert e["ndcg@10_expected_std"] == pytest.approx(0.00707107, abs=1e-6)
    assert e["date"] == datetime.datetime.now(datetime.UTC).date().isoformat()
    assert len(e["commit"].split("-")[0]) == 12 and "n_empty" not in e
    assert e["tail_items_ndcg@10"] == pytest.approx(0.04) and e["tail_items_ndcg@10_pes"] == pytest.approx(0.03)
    assert e["ndcg@10_std"] == pytest.approx(0.00707107, abs=1e-6)  # |0.08-0.07| / sqrt(2)
    assert e["tail_items_ndcg@10_std"] == pytest.approx(0.0141421, abs=1e-6)
    assert e["n_users"] == 100 and e["seeds"] == [1, 2] and e["config"] == "c.yaml" and e["command"] == "python x"
    one = entry_from_reports([_report(0.07, 0.03)], [5], "c.yaml", "python x")
    assert "ndcg@10_std" not in one
    with pytest.raises(ValueError, match="different user counts"):
        entry_from_reports([_report(0.07, 0.03, n=10), _report(0.07, 0.03, n=12)], [1, 2], "c", "x")


def test_a_report_from_before_the_expected_side_fills_it_only_where_opt_equals_pes():
    e = entry_from_reports([_report(0.07, 0.03, expected=False)], [1], "c.yaml", "python x")
    assert e["ndcg@10_expected"] is None and e["tail_items_ndcg@10_expected"] is None  # tied: unknown
    assert e["recall@10_expected"] == pytest.approx(0.14) and e["mrr_expected"] == pytest.approx(0.063)
    empty = dict(_report(0.07, 0.03))
    empty["overall"] = {**empty["overall"], "n_empty": 7}
    assert entry_from_reports([empty], [1], "c", "x")["n_empty"] == 7


def test_backfill_fills_only_what_the_means_determine():
    untied = {"ndcg@10": 0.09, "ndcg@10_pes": 0.09, "mrr": 0.08, "mrr_pes": 0.08, "tail_items_ndcg@10": 0.02,
              "tail_items_ndcg@10_pes": 0.02, "n_users": 10, "ndcg@10_std": 0.003}
    got = backfill_expected(untied)
    assert got["ndcg@10_expected_std"] == 0.003
    assert got["ndcg@10_expected"] == 0.09 and got["mrr_expected"] == 0.08 and got["tail_items_ndcg@10_expected"] == 0.02
    assert got["expected_from"] == "opt == pes" and "n_empty" not in got and "mrr@10_expected" not in got
    tied = {"ndcg@10": 0.0527, "ndcg@10_pes": 0.0336, "recall@10": 0.09, "recall@10_pes": 0.06, "mrr": 0.04,
            "mrr_pes": 0.04}
    got = backfill_expected(tied, generative=True)
    assert got["ndcg@10_expected"] is None and got["ndcg@10_expected_bounds"] == [0.0336, 0.0527]
    assert got["recall@10_expected"] is None and got["recall@10_expected_bounds"] == [0.06, 0.09]
    assert got["n_empty"] is None and "re-run" in got["expected_note"] and "expected_from" not in got
    assert backfill_expected(got) == got  # never overwrites


def test_update_merges_and_keeps_other_rows(tmp_path):
    path = tmp_path / "summary.json"
    update_ledger(path, "scientific", "sasrec", {"ndcg@10": 0.07})
    update_ledger(path, "beauty", "sasrec", {"ndcg@10": 0.05})
    update_ledger(path, "scientific", "llmesr", {"ndcg@10": 0.08})
    update_ledger(path, "scientific", "sasrec", {"ndcg@10": 0.075})
    assert read_ledger(path) == {"beauty": {"sasrec": {"ndcg@10": 0.05}},
                                 "scientific": {"llmesr": {"ndcg@10": 0.08}, "sasrec": {"ndcg@10": 0.075}}}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _write_rows(path: str, dataset: str, n: int) -> None:
    for i in range(n):
        update_ledger(path, dataset, f"m{i}", {"ndcg@10": i / 100})


def test_writers_in_parallel_processes_keep_every_row(tmp_path):
    """Two experiment runs (one per core) finish rows at once: no row may be lost to the race."""
    import multiprocessing

    path = str(tmp_path / "summary.json")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_rows, args=(path, f"d{k}", 40)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ledger = read_ledger(path)
    assert sorted(ledger) == ["d0", "d1", "d2", "d3"]
    assert all(len(rows) == 40 for rows in ledger.values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_table_shows_mean_and_std():
    e = entry_from_reports([_report(0.07, 0.03), _report(0.08, 0.05)], [1, 2], "c.yaml", "python x")
    table = format_entries({"sasrec": e}).splitlines()
    assert table[0] == ("| method | NDCG@10 (expected) | NDCG@10 opt | NDCG@10 pes | R@10 (expected) | "
                        "MRR@10 (expected) | users | seeds | date | commit |")
    assert table[2].startswith("| sasrec | 0.0745 ± 0.0071 | 0.0750 ± 0.0071 | 0.0740 | 0.1500 | 0.0600 | 100 | 2 | ")
    old = backfill_expected({"ndcg@10": 0.0527, "ndcg@10_pes": 0.0336, "recall@10": 0.09, "recall@10_pes": 0.06,
                             "n_users": 8317, "seeds": [0]}, generative=True)
    rows = format_entries({"calrec": old, "qrr": {**e, "n_empty": 12}}).splitlines()
    assert rows[0].endswith("| users | seeds | n_empty | date | commit |")
    assert rows[2] == "| calrec | — (in [0.0336, 0.0527], re-measure) | 0.0527 | 0.0336 | — | — | 8317 | 1 | — |  |  |"
    assert "| 100 | 2 | 12 | " in rows[3]
    from genrec.ledger import format_groups

    assert "| sasrec | 0.0745 | 0.0360 | 0.0360 | 0.0360 | 0.0360 |" in format_groups({"sasrec": e})
    assert "| calrec | — | — |" in format_groups({"calrec": old})


def test_runner_trains_each_seed_once_and_writes_the_ledger(tmp_path):
    from genrec.config import load_config
    from genrec.esr.experiments import ExperimentsConfig, run_experiments

    spec = tmp_path / "exp.yaml"
    spec.write_text(json.dumps({
        "dataset": "demo", "runs_dir": str(tmp_path / "runs"), "ledger": str(tmp_path / "summary.json"),
        "experiments": [{"name": "sasrec", "config": str(REPO / "finetune/configs/esr_demo.yaml"),
                         "overrides": ["model=sasrec", "train.epochs=2"], "seeds": [0, 1]},
                        {"name": "popularity", "config": str(REPO / "finetune/configs/esr_demo.yaml"),
                         "overrides": ["model=popularity"], "seeds": [0]},
                        {"name": "headline", "config": str(REPO / "finetune/configs/esr_demo.yaml"),
                         "overrides": ["model=sasrec", "train.epochs=2"], "seeds": [1]}]}))
    cfg = load_config(ExperimentsConfig, spec, ["only=sasrec", f"config_path={spec}"])
    entries = run_experiments(cfg)
    ledger = read_ledger(tmp_path / "summary.json")
    assert list(ledger["demo"]) == ["sasrec"] and ledger["demo"]["sasrec"] == entries["sasrec"]
    e = entries["sasrec"]
    assert e["seeds"] == [0, 1] and e["loss"] == "ce" and "ndcg@10_std" in e and e["n_users"] > 0
    assert e["command"] == f"python eval/run_experiments.py --config {spec} only=sasrec"
    runs = [Path(r) for r in e["runs"]]
    results = [json.loads((r / "results.json").read_text()) for r in runs]
    assert [r["seed"] for r in results] == [0, 1]
    assert e["ndcg@10"] == pytest.approx(round(sum(r["test"]["overall"]["opt"]["ndcg@10"] for r in results) / 2, 6))
    # the unmasked reading: the same scorers with the history left in the ranking
    from genrec.data.demo import demo_dataset
    from genrec.data.preprocess import leave_one_out
    from genrec.esr.scorer import FallbackScorer
    from genrec.esr.trainer import evaluate

    ds = demo_dataset("electronics")
    test = leave_one_out(ds).test
    unmasked = []
    for r in runs:
        opt, _ = evaluate(FallbackScorer.load(r / "scorer", ds.catalog), test, mask_history=False)
        unmasked.append(np.mean(np.where(opt <= 10, 1 / np.log2(opt + 1), 0.0)))
    assert e["ndcg@10_unmasked"] == pytest.approx(float(np.mean(unmasked)), abs=1e-6)
    assert e["ndcg@10_unmasked"] != e["ndcg@10"] and e["seconds_per_epoch"] > 0
    stamp = [(r / "results.json").stat().st_mtime_ns for r in runs]
    assert run_experiments(cfg)["sasrec"] == e  # finished runs are reused, not trained again
    assert [(r / "results.json").stat().st_mtime_ns for r in runs] == stamp
    # another experiment with the same settings copies the finished run instead of training it again
    head = run_experiments(load_config(ExperimentsConfig, spec, ["only=headline"]))["headline"]
    copied = json.loads((Path(head["runs"][0]) / "results.json").read_text())
    assert copied["copied_from"] == str(runs[1]) and copied["test"] == results[1]["test"]
    assert copied["settings"]["output_dir"] == head["runs"][0]


def test_reproduce_passes_inside_the_range_and_fails_loudly_outside(tmp_path, capsys):
    script = load_script("eval/reproduce.py")
    exps = tmp_path / "exp.yaml"
    exps.write_text(json.dumps({"dataset": "demo", "experiments": [
        {"name": "popularity", "config": str(REPO / "finetune/configs/esr_demo.yaml"),
         "overrides": ["model=popularity"], "seeds": [0]}]}))
    from genrec.config import load_config
    from genrec.esr.experiments import ExperimentsConfig, run_experiments

    truth = run_experiments(load_config(ExperimentsConfig, exps, [f"runs_dir={tmp_path / 'truth'}",
                                                                  "write_ledger=false"]))["popularity"]["ndcg@10"]
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps({"runs_dir": str(tmp_path / "r"), "checks": [
        {"experiments": str(exps), "name": "popularity", "expect": {"ndcg@10": [truth - 1e-6, truth + 1e-6]}}]}))
    assert script.main(["--config", str(good)]) == 0
    assert "reproduced: 1 value(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"  # the same check with the range edited to exclude the real value
    bad.write_text(good.read_text().replace(str(truth - 1e-6), str(truth + 0.01)).replace(str(truth + 1e-6),
                                                                                        str(truth + 0.02)))
    assert script.main(["--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "REPRODUCTION FAILED: popularity ndcg@10" in err and f"{truth:.4f}" in err


def test_settings_saved_before_a_later_model_section_still_match():
    from genrec.esr.experiments import _same_run, _same_settings

    want = {"model": "sasrec", "esr": {"hidden": 64}, "pad": {"lam": 0.1}, "output_dir": "a"}
    assert _same_settings({"model": "sasrec", "esr": {"hidden": 64}, "output_dir": "a"}, want)
    assert not _same_settings({"model": "sasrec", "esr": {"hidden": 32}, "output_dir": "a"}, want)
    # a model's own section is compared (a value other than its default: a missing one reads as the default)
    assert not _same_settings({"model": "pad", "esr": {"hidden": 64}, "output_dir": "a"},
                              {**want, "model": "pad", "pad": {"lam": 0.7}})
    assert _same_run({"model": "sasrec", "esr": {"hidden": 64}, "output_dir": "b"}, want)
    # where a run trained, and a trainer's settings for a model that trains nothing, are not the run
    trained = {"model": "sasrec", "train": {"epochs": 4, "device": "cuda"}}
    assert _same_settings({"model": "sasrec", "train": {"epochs": 4}}, trained)
    assert not _same_settings({"model": "sasrec", "train": {"epochs": 5}}, trained)
    assert _same_settings({"model": "textknn", "train": {"epochs": 30}}, {**trained, "model": "textknn"})
    # cold-item settings a run predates take their first values; a run with other values is another run
    cold = {"model": "llmesr", "cold": {"fraction": 0.15, "id_rows": "mean", "scores": "raw", "weight_on": "valid",
                                        "text_weights": "one"}}
    assert _same_settings({"model": "llmesr", "cold": {"fraction": 0.15}}, cold)
    assert not _same_settings({"model": "llmesr", "cold": {"fraction": 0.15, "scores": "text_fused"}}, cold)
    # so do settings added to a model's section (item-ID dropout came after every LLM-ESR run of 2026-12-06)
    assert _same_settings({"model": "llmesr", "esr": {"hidden": 128}}, {"model": "llmesr", "esr": {"hidden": 128,
                                                                                               "id_dropout": 0.0}})
    assert not _same_settings({"model": "llmesr", "esr": {"hidden": 128}},
                              {"model": "llmesr", "esr": {"hidden": 128, "id_dropout": 0.15}})


def test_a_finished_run_with_other_settings_is_moved_aside_not_resumed(tmp_path):
    from genrec.config import load_config
    from genrec.esr.experiments import ExperimentsConfig, run_experiments

    def spec(epochs: int):
        path = tmp_path / f"exp{epochs}.yaml"
        path.write_text(json.dumps({"dataset": "demo", "runs_dir": str(tmp_path / "runs"), "write_ledger": False,
                                    "experiments": [{"name": "s", "config": str(REPO / "finetune/configs/esr_demo.yaml"),
                                                     "overrides": ["model=sasrec", f"train.epochs={epochs}"],
                                                     "seeds": [0]}]}))
        return load_config(ExperimentsConfig, path)

    run_experiments(spec(1))
    run_experiments(spec(2))  # the trainer would refuse the old last.pt: the runner moves the old run away
    folder = tmp_path / "runs" / "demo" / "s"
    moved = [p.name for p in folder.iterdir() if p.name.startswith("seed0.replaced-")]
    assert len(moved) == 1
    assert json.loads((folder / moved[0] / "results.json").read_text())["training"]["epochs_run"] == 1
    assert json.loads((folder / "seed0" / "results.json").read_text())["training"]["epochs_run"] == 2


def test_ledger_report_prints_the_expected_value_first_per_dataset(tmp_path, capsys):
    """eval/ledger_report.py, which the results page's tables are pasted from: per dataset, a table
    whose first metric column is the expected NDCG@10; a tied old row shows its bounds."""
    path = tmp_path / "summary.json"
    update_ledger(path, "toy", "qrr", {**entry_from_reports([_report(0.07, 0.03)], [0], "c", "x"), "n_empty": 3})
    update_ledger(path, "toy", "old", backfill_expected({"ndcg@10": 0.05, "ndcg@10_pes": 0.03, "recall@10": 0.1,
                                                         "recall@10_pes": 0.08, "n_users": 9, "seeds": [1]}, True))
    update_ledger(path, "other", "sasrec", backfill_expected({"ndcg@10": 0.08, "ndcg@10_pes": 0.08, "n_users": 9,
                                                              "seeds": [1, 2], "ndcg@10_std": 0.001}))
    assert load_script("eval/ledger_report.py").main(["--ledger", str(path)]) == 0
    out = capsys.readouterr().out
    assert "### other\n\n| method | NDCG@10 (expected) | NDCG@10 opt | NDCG@10 pes | R@10 (expected) | MRR@10 " \
           "(expected) | users | seeds |\n" in out
    assert "| sasrec | 0.0800 ± 0.0010 | 0.0800 ± 0.0010 | 0.0800 | — | — | 9 | 2 |" in out
    toy = out[out.index("### toy"):].splitlines()
    assert toy[2].endswith("| users | seeds | n_empty | date | commit |")
    assert toy[4].startswith("| old | — (in [0.0300, 0.0500], re-measure) | 0.0500 | 0.0300 | — | — | 9 | 1 | — |")
    assert toy[5].startswith("| qrr | 0.0695 | 0.0700 | 0.0690 | 0.1400 | 0.0560 | 100 | 1 | 3 | 20")


def test_cold_table_shows_cold_warm_and_all_events_and_skips_rows_without_them():
    from genrec.ledger import format_cold

    row = {"ndcg@10_expected": 0.0679, "ndcg@10_cold": 0.0706, "ndcg@10_cold_ci95": 0.0124, "ndcg@10_warm": 0.0674,
           "ndcg@10_warm_ci95": 0.0051, "recall@10_cold": 0.1023, "n_cold": [1204, 1330, 1294],
           "n_warm": [7113, 6987, 7023], "seeds": [0, 1, 2], "date": "2026-12-06", "commit": "abc"}
    table = format_cold({"textknn_last": row, "plain": {"ndcg@10_expected": 0.08, "seeds": [1]},
                         "one": {**row, "n_cold": 1204, "n_warm": 7113, "seeds": [0]}}).splitlines()
    assert table[0].startswith("| method | NDCG@10 cold ± 95% | NDCG@10 warm ± 95% | NDCG@10 all | R@10 cold |")
    assert table[2] == ("| textknn_last | 0.0706 ± 0.0124 | 0.0674 ± 0.0051 | 0.0679 | 0.1023 | 1204–1330 | "
                        "6987–7113 | 3 | 2026-12-06 | abc |")
    assert table[3].startswith("| one | 0.0706 ± 0.0124 | 0.0674 ± 0.0051 | 0.0679 | 0.1023 | 1204 | 7113 | 1 |")
    assert len(table) == 4  # the row without cold keys is left out
    only_cold = {"ndcg@10_expected": 0.05, "ndcg@10_cold": 0.05, "ndcg@10_cold_ci95": 0.01, "recall@10_cold": 0.1,
                 "n_cold": 1204, "targets": "cold", "seeds": [0]}
    assert format_cold({"calrec": only_cold}).splitlines()[2].startswith(
        "| calrec | 0.0500 ± 0.0100 | — | — | 0.1000 | 1204 | — | 1 |")
