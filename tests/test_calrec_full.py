"""Full fine-tuning (``tuning: full``) next to LoRA: exact resume, plain model folders, vLLM serving.

A tiny random Llama (head size 64, which vLLM's CPU attention supports) with the SmolLM2
tokenizer stands in for the base model; the short-target template, projection heads and the
negatives queue are on, so their saved state is part of what a resumed run must restore.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genrec.generation import vllm_available
from tests.conftest import save_tiny_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory, tokenizer) -> str:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny64"), tokenizer, hidden=128, heads=2,
                           max_position_embeddings=512, tie_word_embeddings=True)


def _common(model: str, tuning: str) -> list[str]:
    return [f"model={model}", f"tuning={tuning}", "datasets=[{format: demo, name: kitchen}]", "max_steps=4",
            "save_steps=2", "logging_steps=1", "batch_size=3", "max_tokens=96", "max_history=3", "precision=fp32",
            "template=calrec_short", "lr=1e-3", "validation.max_examples=6", "validation.eval_steps=2",
            "loss.projection_heads=true", "loss.projection_dim=16", "loss.queue_size=5", "loss.tau=0.1"]


def _curve(path: Path) -> dict[int, dict]:
    """Training and validation records by step, read as the loss-curve tool reads them (a step
    logged again after a resume: the later record wins)."""
    from genrec.training.curves import read_stage_log

    log = read_stage_log(path)
    rows = {r["step"]: dict(r) for r in log.train}
    for r in log.evals:
        rows.setdefault(r["step"], {}).update(r)
    return rows


@pytest.fixture(scope="module")
def trained(tiny64, tmp_path_factory) -> dict[str, Path]:
    """A full fine-tune (run in two invocations) and a LoRA run, 4 steps each."""
    from genrec.config import load_config
    from genrec.training import TrainConfig, run_stage

    root = tmp_path_factory.mktemp("calrec_full")
    out = {}
    first = run_stage(load_config(TrainConfig, None, [*_common(tiny64, "full"), "run_steps=2",
                                                      f"output_dir={root / 'full'}"]))
    assert not first.completed and first.global_step == 2 and first.weights_dir is None
    resumed = run_stage(load_config(TrainConfig, None, [*_common(tiny64, "full"), f"output_dir={root / 'full'}"]))
    assert resumed.completed and resumed.weights_dir == root / "full" / "model"
    out["full"] = resumed.weights_dir
    run_stage(load_config(TrainConfig, None, [*_common(tiny64, "full"), f"output_dir={root / 'whole'}"]))
    out["full_curve"], out["whole_curve"] = root / "full" / "metrics.jsonl", root / "whole" / "metrics.jsonl"
    out["lora"] = run_stage(load_config(TrainConfig, None, [*_common(tiny64, "lora"),
                                                            f"output_dir={root / 'lora'}"])).weights_dir
    return out


def test_full_fine_tune_resumed_equals_uninterrupted_and_saves_a_plain_model(trained, tiny64):
    from safetensors.torch import load_file

    a, b = _curve(trained["whole_curve"]), _curve(trained["full_curve"])
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:  # the queue and heads travel with the checkpoint: the resumed half is the same run
        for key in ("loss", "nig", "tt", "ut", "eval_loss", "eval_tt", "eval_ut"):
            if key in a[step]:
                assert b[step][key] == pytest.approx(a[step][key], abs=1e-5), (step, key)
    model = trained["full"]
    assert (model / "config.json").exists() and (model / "model.safetensors").exists()
    assert not (model / "adapter_config.json").exists()
    assert not list(model.glob("calrec_heads*.safetensors"))  # vLLM loads every top-level *.safetensors
    heads = load_file(str(model / "calrec_heads" / "calrec_heads.safetensors"))
    assert heads["heads.user.weight"].shape == (16, 128) and heads["queue.tt"].shape == (5, 16)
    assert heads["queue.filled"].tolist() == [5, 5]
    trained_w, base_w = load_file(str(model / "model.safetensors")), load_file(str(Path(tiny64) / "model.safetensors"))
    changed = [k for k in base_w if not torch.equal(trained_w[k], base_w[k])]
    assert len(changed) == len(base_w)  # every weight was trained, embeddings and norms included


@pytest.mark.parametrize("tuning", ["full", "lora"])
def test_ut_by_tau_of_the_final_weights_equals_the_runs_last_validation_l_ut(trained, tiny64, tuning):
    # The τ sweep reloads the saved weights and heads and rebuilds the validation batches itself;
    # at the training τ it must give the L_UT the trainer logged at the last step (4).
    from genrec.config import load_config
    from genrec.training import TrainConfig
    from genrec.training.validation import calrec_ut_by_tau

    cfg = load_config(TrainConfig, None, _common(tiny64, tuning))
    weights = trained["whole_curve"].parent / "model" if tuning == "full" else trained["lora"]
    logged = _curve(trained["whole_curve"] if tuning == "full" else trained["lora"].parent / "metrics.jsonl")[4]
    result = calrec_ut_by_tau(cfg, str(weights), [0.05, 1.0])
    assert sorted(result["by_tau"]) == [0.05, 0.1, 1.0] and result["trained_tau"] == 0.1
    assert result["at_trained_tau"] == pytest.approx(logged["eval_ut"], abs=1e-4)
    assert result["best"] == min(result["by_tau"].values()) and result["rows"] == 6
    assert result["chance"] == pytest.approx(2.0794, abs=1e-4)  # ln 8: validation batches of 8


def test_stage_label_names_what_stage_2_continues(tmp_path):
    from genrec.training import TrainConfig

    stage1 = tmp_path / "stage1"
    (stage1 / "model").mkdir(parents=True)
    assert TrainConfig(model="smollm2-135m", tuning="full").stage_label() == "stage 1, full"
    # A model folder without its run's record is a base model, not a stage-1 output.
    assert TrainConfig(model=str(stage1 / "model"), tuning="full").stage_label() == "stage 1, full"
    (stage1 / "run.json").write_text("{}")
    assert (TrainConfig(model=str(stage1 / "model"), tuning="full").stage_label()
            == f"stage 2 (continues {stage1 / 'model'}), full")
    assert TrainConfig(init_adapter="runs/s1/adapter").stage_label() == "stage 2 (continues runs/s1/adapter), lora"


def test_full_tuning_refuses_an_adapter_to_continue(tiny64, tmp_path):
    from genrec.config import load_config
    from genrec.errors import ConfigError
    from genrec.training import TrainConfig, run_stage

    with pytest.raises(ConfigError, match="set model to stage 1's"):
        run_stage(load_config(TrainConfig, None, [*_common(tiny64, "full"), f"init_adapter={tmp_path}",
                                                  f"output_dir={tmp_path / 'x'}"]))
    with pytest.raises(ConfigError, match="tuning 'partial'"):
        run_stage(load_config(TrainConfig, None, [*_common(tiny64, "partial"), f"output_dir={tmp_path / 'y'}"]))


def _greedy_hf(model_dir: str, prompt: str, n: int) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:])


@pytest.mark.vllm
def test_full_and_lora_bundles_serve_through_vllm(trained, tiny64, tmp_path):
    """Both kinds of output become bundles that vLLM serves with the trained weights (greedy = HF's)."""
    if not vllm_available():
        pytest.skip("vllm does not import here")
    from genrec.bundle import Bundle, BundleConfig, BundleSettings, write_bundle
    from genrec.data.source import DatasetSource
    from genrec.recommender import RecommenderSettings

    settings = BundleSettings(recommender=RecommenderSettings(n_gen=2, k=5, max_prompt_tokens=128),
                              generation={"backend": "vllm", "max_new_tokens": 6, "temperature": 0.0,
                                          "dtype": "float32", "max_model_len": 256})
    prompt = "Purchases, oldest first:\n- Chef knife\nNext purchase:\n- "
    for kind, model, adapter in (("full", str(trained["full"]), ""), ("lora", tiny64, str(trained["lora"]))):
        bundle = Bundle.load(write_bundle(BundleConfig(
            out=str(tmp_path / kind), dataset=DatasetSource("demo", name="kitchen"), model=model, adapter=adapter,
            settings=settings)))
        assert bundle.adapter_path is None  # LoRA merged on CPU: vLLM serves plain weights either way
        gen = bundle.make_generator()
        try:
            text = gen.generate([prompt], n=1)[0][0].text
        finally:
            gen.shutdown()
        assert text == _greedy_hf(bundle.model_path, prompt, 6).split("\n")[0], kind


def test_full_and_lora_bundles_keep_the_heads_for_the_embedding_mode(trained, tiny64, tmp_path):
    """A merged LoRA bundle carries the adapter's heads into its model folder; both kinds answer
    the embedding mode with the heads their run trained (and its τ)."""
    import hashlib

    from genrec.bundle import Bundle, BundleConfig, BundleSettings, write_bundle
    from genrec.data.source import DatasetSource
    from genrec.recommender import MODE_EMBEDDING, PATH_GENERATIVE, RecommenderSettings
    from genrec.training.model import heads_file

    settings = BundleSettings(recommender=RecommenderSettings(k=5, max_prompt_tokens=128, embedding_m=20),
                              generation={"backend": "hf", "max_new_tokens": 6, "dtype": "float32"})
    for kind, model, adapter in (("full", str(trained["full"]), ""), ("lora", tiny64, str(trained["lora"]))):
        bundle = Bundle.load(write_bundle(BundleConfig(
            out=str(tmp_path / kind), dataset=DatasetSource("demo", name="kitchen"), model=model, adapter=adapter,
            settings=settings)))
        trained_heads = heads_file(Path(adapter or model)).read_bytes()
        emb = bundle.embedding
        assert emb.encoder.heads_digest == hashlib.sha256(trained_heads).hexdigest()[:16], kind
        assert emb.encoder.tau == 0.1 and emb.item_vectors.shape == (len(bundle.catalog), 16)
        answer = bundle.recommender(backend="hf").recommend([bundle.catalog[0].item_id], mode=MODE_EMBEDDING)
        assert answer.path == PATH_GENERATIVE and answer.mode == MODE_EMBEDDING and len(answer.items) == 5


def test_select_best_by_pessimistic_ndcg_keeps_that_checkpoint(tiny64, tmp_path):
    """``select_best: ndcg@10_pes`` keeps the checkpoint with the best pessimistic validation NDCG@10
    (the first of equals), the one a catalog-wide tie cannot lift."""
    import json

    from genrec.config import load_config
    from genrec.training import TrainConfig, run_stage

    result = run_stage(load_config(TrainConfig, None, [
        *_common(tiny64, "full"), f"output_dir={tmp_path}", "validation.ranking_users=3", "validation.n_gen=1",
        "validation.n_preds=1", "validation.temperature=0.0", "validation.max_new_tokens=4",
        "validation.select_best=ndcg@10_pes"]))
    assert result.completed
    points = {step: r["eval_ndcg@10_pes"] for step, r in _curve(tmp_path / "metrics.jsonl").items()
              if "eval_ndcg@10_pes" in r}
    assert sorted(points) == [2, 4]
    best_step = max(points, key=lambda s: (points[s], -s))
    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["best_metric"] == pytest.approx(points[best_step])
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")


def test_select_best_rejects_an_unknown_metric(tiny64):
    from genrec.config import load_config
    from genrec.errors import ConfigError
    from genrec.training import TrainConfig

    with pytest.raises(ConfigError, match="ndcg@10_pes"):  # when the settings are read, before any model loads
        load_config(TrainConfig, None, [*_common(tiny64, "full"), "validation.select_best=recall@10"])
