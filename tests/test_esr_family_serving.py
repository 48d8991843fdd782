"""Each model of the fallback family, chosen by name: trained by finetune/train_esr.py on the demo data,
loaded from a bundle, and answering through the HTTP server when the latency budget is used up."""

from __future__ import annotations

import json

import httpx
import pytest

from genrec.bundle import Bundle, BundleConfig, BundleSettings, write_bundle
from genrec.data.source import DatasetSource
from genrec.esr import FallbackScorer
from genrec.recommender import PATH_FALLBACK, RecommenderSettings
from tests.test_bundle import tiny_model  # noqa: F401  (a fixture)
from tests.test_esr_train_script import REPO, _script
from tests.test_server import start_thread_server

MODELS = ["sasrec", "llmesr", "alpharec", "darec", "pad"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, dict]:
    """Every model trained for two tiny epochs: {name: results.json}."""
    root = tmp_path_factory.mktemp("family")
    out = {}
    for name in MODELS:
        rc = _script().main(["--config", str(REPO / "finetune/configs/esr_demo.yaml"), f"model={name}",
                             f"output_dir={root / name}", "train.epochs=2"])
        assert rc == 0
        out[name] = json.loads((root / name / "results.json").read_text())
    return out


@pytest.mark.parametrize("name", MODELS)
def test_each_model_trains_by_name_and_answers_from_a_bundle_through_the_server(name, trained, tiny_model,  # noqa: F811
                                                                              tmp_path):
    res = trained[name]
    assert res["model"] == name and res["training"]["epochs_run"] == 2 and res["mask_history"] is True
    assert res["sequential"] is (name != "alpharec")
    assert res["test"]["overall"]["n"] == res["test"]["head_users"]["n"] + res["test"]["tail_users"]["n"]
    assert 0 < res["test"]["overall"]["opt"]["ndcg@10"] <= 1
    scorer = FallbackScorer.load(res["scorer_dir"])
    assert scorer.model.name == ("llmesr" if name == "sasrec" else name) and scorer.meta["model"] == name

    settings = BundleSettings(recommender=RecommenderSettings(n_gen=1, k=5),
                              generation={"backend": "hf", "max_new_tokens": 2, "dtype": "float32"})
    bundle = Bundle.load(write_bundle(BundleConfig(out=str(tmp_path / "bundle"),
                                                   dataset=DatasetSource("demo", name="electronics"),
                                                   model=tiny_model, copy_model=False, fallback=res["scorer_dir"],
                                                   settings=settings)))
    assert bundle.fallback_path == PATH_FALLBACK and type(bundle.fallback_scorer.model) is type(scorer.model)
    url, server, thread = start_thread_server(bundle)
    try:
        ids = [it.item_id for it in bundle.catalog]
        history = [ids[3], ids[17], ids[5]]
        r = httpx.post(url + "/recommend", json={"history": history, "k": 5, "budget_ms": 0.001}, timeout=60)
        assert r.status_code == 200
        answer = r.json()
        assert answer["path"] == PATH_FALLBACK and "budget" in answer["reason"]
        expected = scorer.recommend([3, 17, 5], k=5)
        assert [it["item_id"] for it in answer["items"]] == [ids[i] for i, _ in expected]
        assert [it["score"] for it in answer["items"]] == pytest.approx([s for _, s in expected], rel=1e-5)
    finally:
        server.should_exit = True
        thread.join(30)
