"""A live catalog: items added, re-texted, withdrawn and restored in a bundle and in a running server.

Bundles are the demo electronics shop over a tiny random Llama (so every mode runs in seconds); the
fallback is an LLM-ESR trained for two epochs on the same shop. Each test writes its own bundle,
because changes are written into it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from genrec.bundle import Bundle, BundleConfig, BundleSettings, write_bundle
from genrec.cli import main as cli_main
from genrec.data.source import DatasetSource
from genrec.decoding.trie import ItemTrie
from genrec.generation.base import Sample
from genrec.grounding import BM25Index, qrr_batch, qrr_scores
from genrec.live_catalog import LIVE_DIR, PAUSE_ENV, STATE, CatalogChangeError, overlay_bm25, trie_paths
from genrec.recommender import MODES, PATH_FALLBACK, PATH_GENERATIVE, RecommenderSettings
from tests.test_bundle import tiny_model  # noqa: F401  (a fixture)
from tests.test_esr_train_script import _script
from tests.test_server import start_server_process, start_thread_server, stop_process

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-admin-token"


@pytest.fixture(scope="module")
def llmesr_scorer(tmp_path_factory) -> str:
    """LLM-ESR on the demo shop, two epochs: its scorer folder (with the item-encoder record)."""
    out = tmp_path_factory.mktemp("llmesr")
    rc = _script().main(["--config", str(REPO / "finetune/configs/esr_demo.yaml"), "model=llmesr",
                         f"output_dir={out}", "train.epochs=2"])
    assert rc == 0
    return str(out / "scorer")


@pytest.fixture(scope="module")
def heads_model(tmp_path_factory, tokenizer) -> str:
    """A tiny random Llama saved as a CALRec fine-tune with its contrastive heads (the embedding mode)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from genrec.training.config import LossConfig
    from genrec.training.model import CALRecModel

    out = tmp_path_factory.mktemp("heads-model") / "model"
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=64, vocab_size=len(tokenizer)))
    CALRecModel(model, LossConfig(projection_heads=True, projection_dim=8, tau=0.1, user_pooling="last")).save(out)
    tokenizer.save_pretrained(out)
    return str(out)


def make_bundle(path: Path, model: str, fallback: str = "") -> Path:
    settings = BundleSettings(recommender=RecommenderSettings(n_gen=2, n_preds=2, k=5, rerank_m=8),
                              generation={"backend": "hf", "max_new_tokens": 6, "dtype": "float32"})
    return write_bundle(BundleConfig(out=str(path), dataset=DatasetSource("demo", name="electronics"), model=model,
                                     copy_model=False, fallback=fallback, settings=settings))


class TitleWriter:
    """Stands in for the LLM: every sample is ``Title: <the history's last item's title>``, the
    text a catalog item with that title is indexed by."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def generate(self, prompts, n=None, seed=None):
        time.sleep(self.seconds)
        out = []
        for p in prompts:
            line = [x for x in p.splitlines() if "Title:" in x][-1]
            title = line.split("Title:", 1)[1].split("|")[0].strip()
            out.append([Sample(f"Title: {title}", -1.0)] * (n or 1))
        return out


# -- the pieces, on hand-computed cases --------------------------------------------------------
def test_overlay_bm25_weights_changed_items_with_the_base_statistics():
    base = BM25Index.build(["red apple", "green apple", "blue sky"])  # N=3, avgdl=2, k1=1.5, b=0.75
    assert base.avgdl == 2.0
    # item 3 added ("red sky", a new word "purple" in item 4), item 1 re-texted, item 2 hidden
    idx = overlay_bm25(base, {3: "red sky", 4: "purple", 1: "green pear"}, np.array([1, 2]), 5)
    # df 1 of N=3 -> idf log(2.5/1.5); a length-2 item with tf 1 at avgdl 2: term part 2.5/2.5 = 1
    idf1 = math.log(2.5 / 1.5)
    np.testing.assert_allclose(idx.scores("red"), [idf1, 0, 0, idf1, 0], rtol=1e-6)
    # "sky" only in the hidden item 2 and the new item 3; "purple" unseen: df 1 among the changed
    # items, idf log(2.5/1.5); "purple" alone is 1 word: 2.5 / (1 + 1.5 (0.25 + 0.75/2))
    np.testing.assert_allclose(idx.scores("sky"), [0, 0, 0, idf1, 0], rtol=1e-6)
    np.testing.assert_allclose(idx.scores("purple"), [0, 0, 0, 0, idf1 * 2.5 / (1 + 1.5 * 0.625)], rtol=1e-6)
    # the re-texted item 1 lost "apple" (idf log(1.5/2.5) < 0 -> 0 anyway) and "green" stays; "pear" new
    assert idx.scores("apple")[1] == 0 and idx.scores("green")[1] == pytest.approx(idf1)
    assert idx.scores("pear")[1] > 0 and idx.num_items == 5
    # QRR's compiled kernel reads base and side weights together, as the sparse product does
    samples = [[Sample("red sky purple", -1.0), Sample("green apple pear", -2.0)], [Sample("blue", 0.0)]]
    fast, ref = qrr_batch(samples, idx, kernel="numba"), qrr_batch(samples, idx, kernel="scipy")
    np.testing.assert_allclose(fast, ref, rtol=1e-6)
    assert fast[0, 3] == pytest.approx(math.exp(-0.01)) and not fast[1].any()  # "blue": only the hidden item 2


def test_trie_paths_read_every_item_back():
    seqs = [[5, 1, 2], [5, 1], [7], [5, 1, 2], [5, 3, 9, 9]]
    trie = ItemTrie.build(seqs)
    assert [p.tolist() for p in trie_paths(trie)] == seqs


# -- the bundle API ---------------------------------------------------------------------------
NEW = [{"item_id": "new-toaster", "title": "Zorblax Quantum Toaster", "brand": "Zorblax",
        "categories": ["Kitchen"], "price": 19.5},
       {"item_id": "new-kettle", "title": "Zorblax Plasma Kettle", "description": "Boils fast."}]


def test_changes_round_trip_through_a_reload(tmp_path, tiny_model):  # noqa: F811
    bundle = Bundle.load(make_bundle(tmp_path / "b", tiny_model))
    n = len(bundle.catalog)
    base_id = bundle.catalog[3].item_id
    snap = bundle.change_catalog("add", NEW)
    assert (snap.version, len(bundle.catalog)) == (1, n + 2)
    assert bundle.catalog[n].price == "19.5" and bundle.popularity[n:].tolist() == [0, 0]
    bundle.change_catalog("update", [(base_id, {"title": "Lumina Renamed Camera"}), ("new-kettle", {"brand": "Zb"})])
    bundle.change_catalog("withdraw", ["new-toaster", bundle.catalog[0].item_id])
    bundle.change_catalog("restore", [bundle.catalog[0].item_id])
    again = Bundle.load(bundle.path)
    assert [it.to_dict() for it in again.catalog] == [it.to_dict() for it in bundle.catalog]
    assert np.flatnonzero(again.snapshot.withdrawn).tolist() == [n] and again.snapshot.version == 4
    assert again.catalog[3].title == "Lumina Renamed Camera" and again.catalog[n + 1].brand == "Zb"
    # BM25 follows the texts: the old title is gone, the new one found, the withdrawn item never scores
    s = qrr_scores([Sample("Title: Lumina Renamed Camera", 0.0)], again.index)
    assert int(np.argmax(s)) == 3
    assert qrr_scores([Sample("Title: Zorblax Quantum Toaster", 0.0)], again.index)[n] == 0
    assert qrr_scores([Sample("Title: Zorblax Plasma Kettle", 0.0)], again.index).argmax() == n + 1
    # the prefix tree holds the new and re-texted texts, not the withdrawn one
    tok = again.live.base.tokenizer()
    ids = tok(again.template.render_target(again.catalog[n + 1]), add_special_tokens=False)["input_ids"]
    assert again.trie.lookup(ids).tolist() == [n + 1] and again.trie.num_items == n + 1
    gone = tok(again.template.render_target(again.catalog[n]), add_special_tokens=False)["input_ids"]
    assert again.trie.lookup(gone).tolist() == []
    # base files untouched: a bundle written before the changes still loads as written
    assert again.base_catalog.fingerprint() == again.manifest["catalog_fingerprint"]


@pytest.mark.parametrize("op,payload,status,item,field", [
    ("add", [NEW[0], dict(NEW[1], item_id="new-toaster")], 409, "1 ('new-toaster')", "item_id"),
    ("add", [NEW[0], {"item_id": "x-2", "title": "   "}], 422, "1 ('x-2')", "title"),
    ("add", [NEW[0], {"item_id": "x-3", "title": "Ok", "colour": "red"}], 422, "1 ('x-3')", "colour"),
    ("add", [NEW[0], {"title": "No id"}], 422, "1", "item_id"),
    ("add", [NEW[0], {"item_id": "x-4", "title": "Ok", "categories": "Kitchen"}], 422, "1 ('x-4')", "categories"),
    ("add", [NEW[0], {"item_id": "ele-0001", "title": "Clash"}], 409, "1 ('ele-0001')", "item_id"),
    ("add", [NEW[0], {"item_id": "ele-0002", "title": "Withdrawn id"}], 409, "1 ('ele-0002')", "item_id"),
    ("add", [dict(NEW[0], item_id=f"b-{i}") for i in range(6)], 413, None, None),
    ("update", [("ele-0003", {"title": ""})], 422, "'ele-0003'", "title"),
    ("update", [("nope", {"title": "x"})], 404, "'nope'", "item_id"),
    ("withdraw", ["ele-0004", "ele-0002"], 409, "'ele-0002'", "item_id"),
    ("restore", ["ele-0004"], 409, "'ele-0004'", "item_id"),
])
def test_a_rejected_batch_names_item_and_field_and_applies_nothing(tmp_path, tiny_model, op, payload, status,  # noqa: F811
                                                                   item, field):
    bundle = Bundle.load(make_bundle(tmp_path / "b", tiny_model))
    bundle.change_catalog("withdraw", ["ele-0002"])
    before = ([it.to_dict() for it in bundle.catalog], bundle.snapshot.withdrawn.copy(),
              (tmp_path / "b" / LIVE_DIR / STATE).read_text())
    with pytest.raises(CatalogChangeError) as e:
        bundle.change_catalog(op, payload, max_batch=5)
    assert (e.value.status, e.value.item, e.value.field) == (status, item, field), str(e.value)
    if item:
        assert f"item {item}" in str(e.value)
    after = Bundle.load(bundle.path)
    for b in (bundle, after):
        assert [it.to_dict() for it in b.catalog] == before[0] and (b.snapshot.withdrawn == before[1]).all()
        assert b.snapshot.version == 1
    assert (tmp_path / "b" / LIVE_DIR / STATE).read_text() == before[2]
    assert sorted(p.name for p in (tmp_path / "b" / LIVE_DIR).iterdir() if not p.name.startswith(".")) == [
        "000001.jsonl", STATE]


def test_a_writer_that_missed_another_process_change_is_refused(tmp_path, tiny_model):  # noqa: F811
    path = make_bundle(tmp_path / "b", tiny_model)
    server, cli = Bundle.load(path), Bundle.load(path)  # e.g. a server and the CLI on one bundle
    cli.change_catalog("add", [NEW[0]])
    with pytest.raises(CatalogChangeError) as e:
        server.change_catalog("add", [NEW[1]])
    assert e.value.status == 409 and "changed by another process" in str(e.value)
    assert "new-kettle" not in Bundle.load(path).catalog and "new-kettle" not in server.catalog
    Bundle.load(path).change_catalog("add", [NEW[1]])  # loaded again, it may
    assert {"new-toaster", "new-kettle"} <= set(it.item_id for it in Bundle.load(path).catalog)


def test_withdrawn_items_are_never_returned_by_any_mode_or_path(tmp_path, heads_model, llmesr_scorer):
    bundle = Bundle.load(make_bundle(tmp_path / "b", heads_model, fallback=llmesr_scorer))
    ids = [it.item_id for it in bundle.catalog]
    history = [ids[3], ids[17], ids[5]]
    runs = [(m, "none") for m in MODES] + [("constrained_beam", "zsum"), ("rerank", "rrf"), ("embedding", "zsum")]
    # an added item is encoded by the model's heads like the catalog: a twin of item 9 has its vector
    _ = bundle.embedding
    bundle.change_catalog("add", [dict(bundle.catalog[9].to_dict(), item_id="twin-9")])
    vectors = bundle.embedding.item_vectors
    np.testing.assert_allclose(vectors[-1], vectors[9], atol=1e-5)

    def answers(rec) -> dict:
        out = {(m, f): rec.recommend(history, k=10, mode=m, fusion=f) for m, f in runs}
        out["fallback"] = rec.fallback(rec.prepare(history, k=10), "test")
        return out

    gen = TitleWriter()
    rec = bundle.recommender(backend="hf")
    rec.generator = gen
    first = answers(rec)
    assert first["fallback"].path == PATH_FALLBACK
    shown = sorted({i for a in first.values() for i in a.item_ids})
    bundle.change_catalog("withdraw", shown)  # everything any mode returned
    rec = bundle.recommender(backend="hf")
    rec.generator = gen
    withdrawn = set(np.flatnonzero(bundle.snapshot.withdrawn).tolist())
    for key, a in answers(rec).items():
        assert len(a.items) == 10, key
        assert not {it.index for it in a.items} & withdrawn, (key, a.item_ids)
    # popularity (the fallback model failing) skips them too; histories may still hold them
    rec.fallback_scorer = None
    a = rec.fallback(rec.prepare([ids[i] for i in sorted(withdrawn)[:3]], k=10), "test")
    assert a.path == "popularity" and len(a.items) == 10 and not {it.index for it in a.items} & withdrawn


def test_a_new_item_gets_its_text_row_and_the_shared_unseen_id_row(tmp_path, tiny_model, llmesr_scorer):  # noqa: F811
    import torch

    bundle = Bundle.load(make_bundle(tmp_path / "b", tiny_model, fallback=llmesr_scorer))
    base = bundle.fallback_scorer
    history = [3, 17, 5]
    top = base.recommend(history, 1)[0][0]
    twin = dict(bundle.catalog[top].to_dict(), item_id="twin-of-top")  # the same text under a new id
    bundle.change_catalog("add", [twin])
    live = bundle.fallback_scorer
    n = len(bundle.catalog) - 1
    pairs = dict(live.recommend(history, n + 1))
    with torch.inference_mode():
        u = base.user_vectors([history])[0]
        se, co = base._tables["se"][top + 1].numpy(), base._tables["co"][1:].mean(0).numpy()
    # semantic row: the model's adapter over the same text (exactly the twin's trained input), ID
    # row: the mean of the trained ID rows
    assert pairs[n] == pytest.approx(float(u @ np.concatenate([se, co])), rel=1e-4, abs=1e-4)
    assert pairs[top] == pytest.approx(float(u @ base._table[top].numpy()), rel=1e-5)
    assert live.score_batch([history])[0][n] == pytest.approx(pairs[n], rel=1e-4, abs=1e-4)


def test_cli_changes_a_written_bundle(tmp_path, tiny_model, capsys):  # noqa: F811
    out = make_bundle(tmp_path / "b", tiny_model)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in NEW), encoding="utf-8")
    assert cli_main(["bundle", "add-items", str(out), str(items)]) == 0
    assert cli_main(["bundle", "withdraw", str(out), "new-kettle", "ele-0001"]) == 0
    assert "catalog version 2" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"item_id": "z", "title": "Z", "size": 3}) + "\n", encoding="utf-8")
    assert cli_main(["bundle", "add-items", str(out), str(bad)]) == 2
    assert "item 0 ('z') field 'size': unknown field" in capsys.readouterr().err
    b = Bundle.load(out)
    assert b.snapshot.version == 2 and b.snapshot.is_withdrawn("new-kettle") and "z" not in b.catalog


# -- a running server ----------------------------------------------------------------------------
def test_server_adds_withdraws_and_keeps_changes_across_a_restart(tmp_path, tiny_model, llmesr_scorer):  # noqa: F811
    path = make_bundle(tmp_path / "b", tiny_model, fallback=llmesr_scorer)
    bundle = Bundle.load(path)
    ids = [it.item_id for it in bundle.catalog]
    history = [ids[3], ids[17], ids[5]]  # the stand-in LLM writes the title of ids[5]
    twin = dict(bundle.catalog[5].to_dict(), item_id="twin-5")  # a new item whose text matches the history
    url, server, thread = start_thread_server(bundle, 120, generator=TitleWriter(), admin_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(timeout=60) as c:
            # writes without the token, or with a wrong one, change nothing
            assert c.post(url + "/items", json=[twin]).status_code == 401
            assert c.post(url + "/items", json=[twin], headers={"Authorization": "Bearer nope"}).status_code == 403
            assert c.delete(url + f"/items/{ids[0]}", headers={"Authorization": "Basic x"}).status_code == 403
            assert c.get(url + "/items/twin-5").status_code == 404 and c.get(url + "/health").json()["num_items"] == 143
            r = c.post(url + "/items", json=[twin], headers=auth)
            assert r.status_code == 200 and r.json() == {"op": "add", "count": 1, "version": 1, "num_items": 144,
                                                        "withdrawn": 0}
            assert c.get(url + "/items/twin-5").json()["withdrawn"] is False
            # generative path: the sample grounds on the twin (the history's own item is excluded)
            gen = c.post(url + "/recommend", json={"history": history, "k": 5}).json()
            assert gen["path"] == PATH_GENERATIVE and gen["items"][0]["item_id"] == "twin-5", gen
            # fallback path (budget used up): LLM-ESR scores the twin too
            fb = c.post(url + "/recommend", json={"history": history, "k": 143, "budget_ms": 0.001}).json()
            assert fb["path"] == PATH_FALLBACK and "twin-5" in [it["item_id"] for it in fb["items"]]
            # a bad batch: 4xx naming item and field, nothing applied
            bad = c.post(url + "/items", json=[{"item_id": "ok-1", "title": "Fine"}, {"item_id": "twin-5", "title": "x"}],
                         headers=auth)
            assert bad.status_code == 409 and bad.json()["item"] == "1 ('twin-5')" and bad.json()["field"] == "item_id"
            assert c.get(url + "/items/ok-1").status_code == 404
            # withdraw it: no path returns it, and histories still accept it
            assert c.delete(url + "/items/twin-5", headers=auth).json()["withdrawn"] == 1
            for body in ({"history": history, "k": 140}, {"history": history, "k": 140, "budget_ms": 0.001},
                         {"history": ["twin-5"], "k": 140}):
                r = c.post(url + "/recommend", json=body).json()
                assert "twin-5" not in [it["item_id"] for it in r["items"]] and len(r["items"]) == 140, r
            upd = c.put(url + f"/items/{ids[7]}", json={"title": "Renamed Thing"}, headers=auth)
            assert upd.status_code == 200 and c.get(url + f"/items/{ids[7]}").json()["title"] == "Renamed Thing"
    finally:
        server.should_exit = True
        thread.join(30)
    again = Bundle.load(path)  # a restart: both changes are there
    url, server, thread = start_thread_server(again, 120, generator=TitleWriter())
    try:
        with httpx.Client(timeout=60) as c:
            assert c.get(url + "/items/twin-5").json()["withdrawn"] is True
            assert c.get(url + f"/items/{ids[7]}").json()["title"] == "Renamed Thing"
            r = c.post(url + "/recommend", json={"history": history, "k": 140}).json()
            assert "twin-5" not in [it["item_id"] for it in r["items"]]
            # a server started without a token refuses every write
            assert c.post(url + "/items/twin-5/restore", headers=auth).status_code == 403
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_request_in_flight_finishes_on_the_catalog_it_started_with(tmp_path, tiny_model):  # noqa: F811
    bundle = Bundle.load(make_bundle(tmp_path / "b", tiny_model))
    ids = [it.item_id for it in bundle.catalog]
    body = {"history": [ids[3], ids[5]], "k": 5}
    gen = TitleWriter()
    url, server, thread = start_thread_server(bundle, 120, generator=gen, admin_token=TOKEN)
    try:
        top = httpx.post(url + "/recommend", json=body, timeout=60).json()["items"][0]["item_id"]
        gen.seconds = 3.0  # the next request generates for 3 s
        started: dict = {}
        t = threading.Thread(target=lambda: started.setdefault("r", httpx.post(url + "/recommend", json=body,
                                                                                timeout=60)))
        t.start()
        time.sleep(1.0)  # it is generating now
        t0 = time.perf_counter()
        r = httpx.delete(url + f"/items/{top}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert r.status_code == 200 and time.perf_counter() - t0 < 2.0  # a change does not wait for requests
        t.join(60)
        assert started["r"].json()["items"][0]["item_id"] == top  # the catalog it started with
        gen.seconds = 0.0
        after = httpx.post(url + "/recommend", json=body, timeout=60).json()
        assert top not in [it["item_id"] for it in after["items"]]
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_server_killed_during_a_1000_item_change_leaves_all_or_none_of_it(tmp_path, tiny_model):  # noqa: F811
    path = make_bundle(tmp_path / "b", tiny_model)
    batch = [{"item_id": f"kill-{i:04d}", "title": f"Kill Test Gadget {i}", "brand": "Acme"} for i in range(1000)]
    outcomes = []
    # 1) killed while the batch file is written and the state not yet switched: none of it
    # 2) killed after the answer: all of it
    for pause, wait_answer in ((60, False), (0, True)):
        proc, url, _ = start_server_process(path, tmp_path, "backend=hf", "log_dir=", timeout=240,
                                           env={"GENREC_ADMIN_TOKEN": TOKEN, PAUSE_ENV: str(pause)})
        try:
            done: dict = {}

            def send(url: str, done: dict) -> None:
                try:
                    done["r"] = httpx.post(url + "/items", json=batch, timeout=120,
                                           headers={"Authorization": f"Bearer {TOKEN}"})
                except httpx.HTTPError as e:
                    done["error"] = e

            t = threading.Thread(target=send, args=(url, done))
            t.start()
            live = path / LIVE_DIR
            t0 = time.time()
            while time.time() - t0 < 120:
                if wait_answer and "r" in done or not wait_answer and any(live.glob("0*.jsonl")):
                    break
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            t.join(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        b = Bundle.load(path)  # loads, whatever the kill left
        added = sum(1 for i in range(1000) if f"kill-{i:04d}" in b.catalog)
        outcomes.append(added)
        assert added in (0, 1000)
    assert outcomes == [0, 1000], outcomes
    # the orphaned batch file of the first try was overwritten by the second's, which is the one in force
    assert json.loads((path / LIVE_DIR / STATE).read_text())["batches"] == ["000001.jsonl"]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_server_grounds_on_added_items_and_never_on_withdrawn_ones(tmp_path, smollm2_dir):
    """The real generative path: SmolLM2 on vLLM writes whatever it writes; a twin of every item
    (same text, a new id, popularity 0) ties with the item the text grounds on, so generative
    answers hold twins; once they are withdrawn, none does."""
    from genrec.generation import vllm_available
    from tests.test_server import make_bundle as server_bundle

    if not vllm_available():
        pytest.skip("vLLM does not import here")
    path = server_bundle(tmp_path / "b", smollm2_dir, "vllm", n_gen=3, max_new_tokens=24,
                         admission={"enabled": False})
    ids = [it.item_id for it in Bundle.load(path).catalog]
    proc, url, _ = start_server_process(path, tmp_path, "log_dir=",
                                        env={"VLLM_CPU_KVCACHE_SPACE": "1", "GENREC_ADMIN_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(timeout=300) as c:
            twins = [dict(c.get(url + f"/items/{i}").json(), item_id=f"twin-{i}") for i in ids]
            for t in twins:
                del t["withdrawn"], t["popularity"], t["catalog_version"]
            assert c.post(url + "/items", json=twins, headers=auth).json()["num_items"] == 2 * len(ids)
            histories = [ids[i:i + 3] for i in range(0, 30, 3)]
            answers = [c.post(url + "/recommend", json={"history": h, "k": 10, "budget_ms": 120000}).json()
                       for h in histories]
            generative = [a for a in answers if a["path"] == PATH_GENERATIVE]
            assert generative, [a["reason"] for a in answers]
            assert any(it["item_id"].startswith("twin-") for a in generative for it in a["items"]), generative
            twin_ids = [t["item_id"] for t in twins]
            for tid in twin_ids:
                assert c.delete(url + f"/items/{tid}", headers=auth).status_code == 200
            for h in histories:
                a = c.post(url + "/recommend", json={"history": h, "k": 10, "budget_ms": 120000}).json()
                assert not any(it["item_id"].startswith("twin-") for it in a["items"]), a
    finally:
        stop_process(proc)
