"""run.json: the fields, the git state of a real temporary repository, fingerprints of real files,
and the records that evaluation and bundles write."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from genrec.data.source import DatasetSource
from genrec.run_record import (
    build_run_record,
    fingerprint,
    git_state,
    library_versions,
    run_record,
    write_run_record,
)


@dataclass
class Inner:
    r: int = 8


@dataclass
class Settings:
    lr: float = 1e-4
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    git(r, "config", "user.email", "t@example.invalid")
    git(r, "config", "user.name", "t")
    (r / "a.txt").write_text("one\n")
    git(r, "add", "a.txt")
    git(r, "commit", "-q", "-m", "first")
    return r


def test_git_state_commit_and_dirty_flag(repo, tmp_path):
    head = git(repo, "rev-parse", "HEAD").strip()
    clean = git_state(repo)
    assert clean == {"commit": head, "dirty": False, "root": str(repo.resolve())}
    (repo / "a.txt").write_text("two\n")  # an uncommitted change to a tracked file
    assert git_state(repo)["dirty"] is True
    (repo / "a.txt").write_text("one\n")
    (repo / "new.txt").write_text("untracked\n")  # untracked files do not change what ran
    assert git_state(repo)["dirty"] is False
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) is None  # not a checkout: no error, no commit


def test_fingerprint_follows_the_content(tmp_path):
    f = tmp_path / "data.jsonl"
    f.write_text('{"user": "u1", "items": ["a"]}\n')
    first = fingerprint(f)
    assert first["kind"] == "file" and first["method"] == "sha256" and first["bytes"] == f.stat().st_size
    assert fingerprint(f)["sha256"] == first["sha256"]
    f.write_text('{"user": "u1", "items": ["b"]}\n')  # same size, other content
    assert fingerprint(f)["sha256"] != first["sha256"]

    d = tmp_path / "dataset"
    d.mkdir()
    (d / "catalog.jsonl").write_text("x\n")
    (d / "sequences.jsonl").write_text("y\n")
    tree = fingerprint(d)
    assert tree["kind"] == "folder" and tree["files"] == 2 and tree["method"] == "sha256-tree"
    (d / "sequences.jsonl").write_text("z\n")
    assert fingerprint(d)["sha256"] != tree["sha256"]
    (d / "sequences.jsonl").write_text("y\n")
    assert fingerprint(d)["sha256"] == tree["sha256"]
    assert fingerprint(tmp_path / "missing")["kind"] == "missing"


def test_record_fields(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    (data / "catalog.jsonl").write_text("c\n")
    cfg = Settings(inner=Inner(r=4))
    path = write_run_record(tmp_path / "run", cfg, [DatasetSource("native", path=str(data)),
                                                     DatasetSource("demo", name="kitchen"), None, ""],
                            seeds={"seed": 3}, started=1_700_000_000.0, ended=1_700_000_012.5)
    assert path == tmp_path / "run" / "run.json"
    rec = json.loads(path.read_text())
    assert rec["config"] == {"lr": 1e-4, "name": "x", "inner": {"r": 4}}
    assert rec["config_type"] == "Settings"
    assert rec["genrec_version"]
    assert set(rec["libraries"]) >= {"python", "torch", "transformers", "peft", "vllm", "faiss"}
    assert rec["libraries"]["torch"] and rec["libraries"]["transformers"]  # installed here
    assert rec["seeds"] == {"seed": 3}
    assert rec["started"] == "2023-11-14T22:13:20+00:00" and rec["wall_s"] == 12.5
    assert rec["status"] == "completed"
    assert rec["machine"]["cpu_count"] >= 1 and isinstance(rec["machine"]["gpu"], bool)
    native, demo = rec["inputs"]
    assert native["kind"] == "folder" and native["dataset"] == {"format": "native", "name": None}
    assert demo == {"path": "demo:kitchen", "kind": "embedded", "sha256": None, "method": "embedded"}
    # this test runs inside genrec's checkout: the commit is known
    state = rec["git"]
    assert state is None or len(state["commit"]) == 40


def test_missing_library_is_none(monkeypatch):
    import genrec.run_record as rr

    monkeypatch.setitem(rr.LIBRARIES, "nonexistent", ("no-such-distribution-xyz",))
    assert library_versions()["nonexistent"] is None


def test_context_manager_running_completed_failed_and_previous(tmp_path):
    out = tmp_path / "run"
    with run_record(out, {"a": 1}, seeds=[0, 1]) as rec:
        first = json.loads(rec.path.read_text())
        assert first["status"] == "running"
        rec.extra["steps"] = 5
        # a commit made while the run goes on does not change what the run recorded
        started = dict(first, git={"commit": "0" * 40, "dirty": False, "root": "/x"})
        rec.path.write_text(json.dumps(started))
    done = json.loads((out / "run.json").read_text())
    assert done["git"] == {"commit": "0" * 40, "dirty": False, "root": "/x"}
    assert done["status"] == "completed" and done["extra"] == {"steps": 5} and done["ended"]
    assert "previous" not in done  # the running → completed rewrite is the same invocation

    with pytest.raises(RuntimeError), run_record(out, {"a": 2}):
        raise RuntimeError("boom")
    failed = json.loads((out / "run.json").read_text())
    assert failed["status"] == "failed" and failed["extra"]["error"] == "RuntimeError: boom"
    assert [p["status"] for p in failed["previous"]] == ["completed"]  # the earlier invocation, kept


def test_record_is_plain_json_for_non_json_values(tmp_path):
    rec = build_run_record({"path": Path("/x"), "n": 1})
    assert rec["config"] == {"path": "/x", "n": 1}


def test_evaluation_results_point_at_their_run_record(tmp_path):
    from genrec.evaluation import EvalConfig, results_markdown, run_evaluation

    out = tmp_path / "eval"
    result = run_evaluation(EvalConfig(dataset=DatasetSource("demo", name="kitchen"), methods=["popularity"],
                                       output_dir=str(out), seed=7))
    saved = json.loads((out / "results.json").read_text())
    assert saved["run_record"] == "run.json" == result["run_record"]
    rec = json.loads((out / saved["run_record"]).read_text())
    assert rec["status"] == "completed" and rec["seeds"] == {"seed": 7}
    assert rec["config"]["methods"] == ["popularity"] and rec["inputs"][0]["path"] == "demo:kitchen"
    assert rec["extra"]["results"] == "results.json"
    assert str(out / "run.json") in results_markdown(result)


def test_bundle_holds_its_run_record(tmp_path, smollm2_dir):
    from genrec.bundle import Bundle, BundleConfig, write_bundle

    catalog = tmp_path / "catalog.jsonl"
    DatasetSource("demo", name="kitchen").load().catalog.save(catalog)
    out = write_bundle(BundleConfig(out=str(tmp_path / "b"), catalog=str(catalog), model=smollm2_dir,
                                    copy_model=False))
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["config"]["catalog"] == str(catalog)
    assert [i["path"] for i in rec["inputs"]] == [str(catalog)]
    assert rec["inputs"][0]["sha256"] == fingerprint(catalog)["sha256"]
    assert rec["extra"]["num_items"] == len(Bundle.load(out).catalog)
