"""inference/batch_generate.py: users in, samples + grounded lists out, resumable after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genrec.data.catalog import Catalog, Item
from genrec.errors import DataError
from genrec.generation.base import Sample
from genrec.grounding import BM25Index
from genrec.prompting import PromptTemplate
from genrec.recommender import PATH_GENERATIVE, Recommender, RecommenderSettings
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "inference" / "batch_generate.py"


bg = load_script("inference/batch_generate.py")


class EchoGenerator:
    """Stands in for a generator: 'writes' the title of the last history item of each prompt."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, n=None, seed=None):
        self.calls += 1
        out = []
        for p in prompts:
            last = [line for line in p.splitlines() if line.startswith("Item: ")][-1]
            out.append([Sample(last[len("Item: "):], -1.0), Sample("Title: Hat", -2.0)])
        return out


@pytest.fixture()
def recommender():
    from genrec.bundle import item_texts
    from genrec.esr import PopularityScorer

    catalog = Catalog(Item(f"i{i}", f"{c} Hat", brand="Acme") for i, c in enumerate(["Red", "Blue", "Green", "Gray"]))
    t = PromptTemplate.load("calrec")
    counts = np.array([3.0, 2.0, 1.0, 0.0])
    return Recommender(catalog, BM25Index.build(item_texts(catalog, t)), t, EchoGenerator(),
                       PopularityScorer(counts), RecommenderSettings(n_gen=2, n_preds=2, k=2, exclude_history=False),
                       popularity=counts)


def write_users(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bad_users_file_names_line_and_field(tmp_path):
    f = tmp_path / "u.jsonl"
    f.write_text('{"user": "a", "history": ["i0"]}\n{"user": "b", "history": "i0"}\n')
    with pytest.raises(DataError, match=r"u.jsonl, line 2, field 'history'"):
        list(bg.read_users(f))
    f.write_text('{"user": "a", "history": []}\n{oops\n')
    with pytest.raises(DataError, match="line 2: invalid or truncated JSON"):
        list(bg.read_users(f))
    f.write_text('{"user": "a", "history": []}\n{"user": "a", "history": []}\n')
    with pytest.raises(DataError, match="appears twice"):
        list(bg.read_users(f))


def test_writes_every_user_and_resumes(tmp_path, recommender):
    users = tmp_path / "users.jsonl"
    write_users(users, [{"user": "u1", "history": ["i0", "i2"]}, {"user": "u2", "history": ["zz"]},
                        {"user": "u3", "history": ["i1"]}, {"user": "u4", "history": ["i3", "zz"]},
                        {"user": "u5", "history": ["i0"]}])
    out = tmp_path / "out.jsonl"
    cfg = bg.BatchGenerateConfig(users=str(users), output=str(out), batch_size=2)
    counts = bg.run_batch_generation(cfg, recommender)
    assert counts == {"users": 5, "skipped": 0, "written": 4, "errors": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in rows] == ["u1", "u2", "u3", "u4", "u5"]
    assert "none of the item ids" in rows[1]["error"]
    r1 = rows[0]
    assert r1["path"] == PATH_GENERATIVE and r1["items"][0]["item_id"] == "i2"  # the echoed newest item
    assert [s["text"] for s in r1["samples"]][0].startswith("Title: Green Hat")
    assert rows[3]["unknown_ids"] == ["zz"] and rows[3]["items"][0]["item_id"] == "i3"

    # a kill in the middle of writing line 4: lines 1-3 complete, line 4 cut short
    text = out.read_text()
    cut = text.index('{"user": "u4"') + 20
    out.write_text(text[:cut])
    calls = recommender.generator.calls
    counts = bg.run_batch_generation(cfg, recommender)
    assert counts == {"users": 5, "skipped": 3, "written": 2, "errors": 0}
    assert recommender.generator.calls == calls + 1  # only the two missing users, one batch
    assert out.read_text() == text  # same lines, none twice, the partial one replaced
    assert bg.run_batch_generation(cfg, recommender)["skipped"] == 5


@pytest.mark.slow
def test_resume_after_kill_of_the_real_script(tmp_path, tokenizer):
    """Kill -9 the script mid-run on a real bundle, rerun it: every user exactly once."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from genrec.bundle import BundleConfig, BundleSettings, write_bundle
    from genrec.data.demo import demo_datasets
    from genrec.data.source import DatasetSource

    model = tmp_path / "tiny"
    LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                 vocab_size=len(tokenizer))).save_pretrained(model)
    tokenizer.save_pretrained(model)
    bundle = write_bundle(BundleConfig(
        out=str(tmp_path / "bundle"), dataset=DatasetSource("demo", name="outdoors"), model=str(model),
        settings=BundleSettings(RecommenderSettings(n_gen=2, k=5),
                                generation={"backend": "hf", "max_new_tokens": 4, "dtype": "float32"})))
    ds = demo_datasets()["outdoors"]
    ids = [it.item_id for it in ds.catalog]
    users = tmp_path / "users.jsonl"
    write_users(users, [{"user": f"u{i}", "history": ids[i % 50:i % 50 + 3]} for i in range(24)])
    out = tmp_path / "out.jsonl"
    args = [sys.executable, str(SCRIPT), f"bundle={bundle}", f"users={users}", f"output={out}", "batch_size=1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while not (out.exists() and out.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() - t0 < 240, "no output from the script"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = out.read_text().count("\n")
    assert first < 24, "finished before the kill: nothing to resume"
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["skipped"] == first
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["user"] for r in rows) == sorted(f"u{i}" for i in range(24))
    assert all(len(r["items"]) == 5 for r in rows)


class StreamingEcho(EchoGenerator):
    """Streams like vLLM's generate_stream: prompts finish out of order (last first)."""

    def __init__(self):
        super().__init__()
        self.streams = []

    def generate_stream(self, prompts, n=None, seed=None, window=64):
        self.streams.append(len(prompts))
        outs = self.generate(prompts, n, seed)
        for i in reversed(range(len(prompts))):
            yield i, outs[i]


def test_streaming_generator_writes_each_user_as_it_finishes_and_resumes(tmp_path, recommender):
    recommender.generator = StreamingEcho()
    users = tmp_path / "users.jsonl"
    write_users(users, [{"user": "u1", "history": ["i0", "i2"]}, {"user": "u2", "history": ["zz"]},
                        {"user": "u3", "history": ["i1"]}, {"user": "u4", "history": ["i3", "zz"]}])
    out = tmp_path / "out.jsonl"
    cfg = bg.BatchGenerateConfig(users=str(users), output=str(out), batch_size=1)
    assert bg.run_batch_generation(cfg, recommender) == {"users": 4, "skipped": 0, "written": 3, "errors": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # the unanswerable user needs no generation and comes first; then the order users finished in
    assert [r["user"] for r in rows] == ["u2", "u4", "u3", "u1"]
    assert recommender.generator.streams == [3]  # one stream of all three answerable users, not batches of 1
    by_user = {r["user"]: r for r in rows}
    assert by_user["u1"]["items"][0]["item_id"] == "i2" and by_user["u4"]["unknown_ids"] == ["zz"]
    assert by_user["u3"]["path"] == PATH_GENERATIVE and by_user["u3"]["items"][0]["item_id"] == "i1"

    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:2]) + '{"user": "u3", "pa')
    assert bg.run_batch_generation(cfg, recommender) == {"users": 4, "skipped": 2, "written": 2, "errors": 0}
    assert recommender.generator.streams == [3, 2]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["user"] for r in rows) == ["u1", "u2", "u3", "u4"]


def test_generation_failure_mid_stream_is_answered_by_the_fallback(tmp_path, recommender):
    class Breaks(StreamingEcho):
        def generate_stream(self, prompts, n=None, seed=None, window=64):
            yield 0, self.generate(prompts[:1], n, seed)[0]
            raise RuntimeError("engine died")

    recommender.generator = Breaks()
    users = tmp_path / "users.jsonl"
    write_users(users, [{"user": f"u{i}", "history": [f"i{i}"]} for i in range(3)])
    out = tmp_path / "out.jsonl"
    counts = bg.run_batch_generation(bg.BatchGenerateConfig(users=str(users), output=str(out)), recommender)
    assert counts == {"users": 3, "skipped": 0, "written": 3, "errors": 0}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["user"], r["path"]) for r in rows] == [("u0", PATH_GENERATIVE), ("u1", "popularity"),
                                                     ("u2", "popularity")]
    assert rows[1]["reason"] == "generation failed: RuntimeError: engine died"
