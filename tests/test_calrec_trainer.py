"""CALRec training on a tiny randomly initialised Llama: loss wiring, overfitting, resume after a kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genrec.errors import ConfigError
from genrec.training.collator import CALRecCollator
from genrec.training.config import LossConfig
from genrec.training.losses import IGNORE_INDEX
from tests.conftest import save_tiny_llama

REPO = Path(__file__).resolve().parents[1]

ROWS = [
    {"prompt": "Purchases, oldest first:\n- Red mug | Brand: Ferro\n- Tea towel\nNext purchase:\n",
     "target": "- Blue kettle | Brand: Ferro\n", "history_span": (25, 61)},
    {"prompt": "Purchases, oldest first:\n- Tent\nNext purchase:\n",
     "target": "- Tent stakes\n", "history_span": (25, 32)},
    {"prompt": "Purchases, oldest first:\n- Camera Pro | Brand: Lumina\n- Camera Bag\n- SD Card 128GB\nNext purchase:\n",
     "target": "- Spare Battery | Brand: Lumina | Category: Accessories\n", "history_span": (25, 83)},
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer) -> str:
    """The tiny Llama with an output layer able to make peaked distributions (std 0.02 cannot, at width 32)."""
    from safetensors.torch import load_file, save_file

    d = tmp_path_factory.mktemp("tiny_llama")
    save_tiny_llama(d, tokenizer)
    weights = load_file(str(d / "model.safetensors"))
    weights["lm_head.weight"] = torch.randn(weights["lm_head.weight"].shape, generator=torch.Generator().manual_seed(1))
    save_file(weights, str(d / "model.safetensors"), metadata={"format": "pt"})
    return str(d)


def _lora_model(tiny_dir, r=8, targets=("q_proj", "k_proj", "v_proj", "o_proj"), seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=list(targets)))
    with torch.no_grad():  # make the adapter non-trivial (B starts at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


def test_collator_labels_spans_and_left_padding(tokenizer):
    col = CALRecCollator(tokenizer, max_length=512, max_target_tokens=64)
    batch = col(ROWS)
    width = batch["input_ids"].shape[1]
    for b, row in enumerate(ROWS):
        p_ids = tokenizer(row["prompt"])["input_ids"]
        t_ids = tokenizer(row["target"], add_special_tokens=False)["input_ids"]
        n = len(p_ids) + len(t_ids)
        pad = width - n
        assert batch["input_ids"][b, pad:].tolist() == p_ids + t_ids
        assert batch["attention_mask"][b].tolist() == [0] * pad + [1] * n
        assert batch["position_ids"][b, pad:].tolist() == list(range(n))
        # Labels: -100 on padding and every prompt token, the target ids on the target.
        assert batch["labels"][b].tolist() == [IGNORE_INDEX] * (pad + len(p_ids)) + t_ids
        assert batch["target_mask"][b].tolist() == [False] * (pad + len(p_ids)) + [True] * len(t_ids)
        # The history span decodes to the item lines only (no label, no suffix).
        hist = batch["input_ids"][b][batch["history_mask"][b]].tolist()
        s, e = row["history_span"]
        assert tokenizer.decode(hist) == row["prompt"][s:e]
        t_len = int(batch["t_attention_mask"][b].sum())
        assert batch["t_input_ids"][b, -t_len:].tolist() == t_ids
        assert batch["t_target_mask"][b].sum() == len(t_ids)


def test_collator_guards_max_length_from_the_left(tokenizer):
    col = CALRecCollator(tokenizer, max_length=20, max_target_tokens=6, with_target_alone=False)
    batch = col(ROWS[2:])
    assert batch["input_ids"].shape[1] == 20
    assert "t_input_ids" not in batch
    t_ids = tokenizer(ROWS[2]["target"], add_special_tokens=False)["input_ids"][:6]
    assert batch["input_ids"][0, -6:].tolist() == t_ids
    p_ids = tokenizer(ROWS[2]["prompt"])["input_ids"]
    assert batch["input_ids"][0, :14].tolist() == p_ids[-14:]  # the newest prompt tokens are kept
    assert col.truncated == {"prompt": 1, "target": 1}


def _by_hand(model, tokenizer, rows, loss: LossConfig, heads=None) -> tuple[float, float, float]:
    """L_NIG, L_TT, L_UT computed row by row on unpadded sequences, with explicit sums."""
    nll_sum, n_tok = 0.0, 0
    v_u, v_tu, v_t = [], [], []
    col = CALRecCollator(tokenizer)
    for row in rows:
        enc = col.encode(row)
        ids = torch.tensor([enc["input_ids"]])
        out = model(input_ids=ids, output_hidden_states=True)
        logp = out.logits[0].float().log_softmax(-1)
        h = out.hidden_states[-1][0].float()
        p_len = enc["labels"].count(IGNORE_INDEX)
        for pos in range(p_len, ids.shape[1]):
            nll_sum -= float(logp[pos - 1, ids[0, pos]])
            n_tok += 1
        hist = [i for i, f in enumerate(enc["history_mask"]) if f]
        # "last": the state that predicts the target's first token.
        v_u.append(h[p_len - 1] if loss.user_pooling == "last" else h[hist].mean(0))
        v_tu.append(h[p_len:].mean(0))
        t_ids = torch.tensor([enc["t_input_ids"]])
        ht = model(input_ids=t_ids, output_hidden_states=True).hidden_states[-1][0].float()
        v_t.append(ht[[i for i, f in enumerate(enc["t_target_mask"]) if f]].mean(0))
    if heads is not None:
        v_u = [heads.user(v) for v in v_u]
        v_tu = [heads.target_in_context(v) for v in v_tu]
        v_t = [heads.target(v) for v in v_t]

    def cos(a, b):
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    def nce(users):
        n = len(users)
        return -sum(math.log(math.exp(cos(users[i], v_t[i]) / loss.tau)
                             / sum(math.exp(cos(users[j], v_t[i]) / loss.tau) for j in range(n)))
                    for i in range(n)) / n

    return nll_sum / n_tok, nce(v_tu), nce(v_u)


@pytest.mark.parametrize("heads,pooling", [(False, "mean"), (True, "mean"), (True, "last")])
def test_combined_loss_equals_hand_combined_components(tiny_dir, tokenizer, heads, pooling):
    from genrec.training.model import CALRecModel

    loss = LossConfig(alpha=0.125, beta=0.025, tau=0.5, projection_heads=heads, projection_dim=16,
                      user_pooling=pooling)
    model = _lora_model(tiny_dir)
    torch.manual_seed(1)
    wrapped = CALRecModel(model, loss).eval()
    batch = CALRecCollator(tokenizer)(ROWS)
    with torch.no_grad():
        out = wrapped(**batch)
        nig, tt, ut = _by_hand(model, tokenizer, ROWS, loss, wrapped.heads)
    assert out["nig"].item() == pytest.approx(nig, abs=1e-5)
    assert out["tt"].item() == pytest.approx(tt, abs=1e-5)
    assert out["ut"].item() == pytest.approx(ut, abs=1e-5)
    assert out["loss"].item() == pytest.approx((1 - 0.125 - 0.025) * nig + 0.125 * tt + 0.025 * ut, abs=1e-5)


def test_queue_joins_only_the_objectives_named_in_queue_for(tiny_dir, tokenizer):
    # The tiny model has no dropout, so a training-mode forward equals an eval-mode one except
    # for the queue. With a full queue and queue_for=[tt], L_TT gets the queued negatives (and
    # rises above its in-batch value) while L_UT stays exactly the in-batch value.
    from genrec.training.model import CALRecModel

    loss = LossConfig(alpha=0.125, beta=0.025, tau=0.5, projection_heads=True, projection_dim=16, queue_size=6,
                      queue_for=["tt"])
    torch.manual_seed(1)
    wrapped = CALRecModel(_lora_model(tiny_dir), loss)
    batch = CALRecCollator(tokenizer)(ROWS)
    with torch.no_grad():
        wrapped.eval()
        in_batch = wrapped(**batch)
        wrapped.train()
        wrapped.queue.push("tt", torch.randn(6, 16))
        wrapped.queue.push("ut", torch.randn(6, 16))
        queued = wrapped(**batch)
    assert queued["ut"].item() == pytest.approx(in_batch["ut"].item(), abs=1e-6)
    assert queued["tt"].item() > in_batch["tt"].item() + 1e-3
    with pytest.raises(ConfigError, match="loss.queue_for"):
        LossConfig(queue_for=["tt", "user"])


def test_alpha_beta_zero_is_plain_next_item_fine_tuning(tiny_dir, tokenizer):
    from genrec.training.model import CALRecModel

    model = _lora_model(tiny_dir).eval()
    wrapped = CALRecModel(model, LossConfig(alpha=0.0, beta=0.0))
    batch = CALRecCollator(tokenizer, with_target_alone=False)(ROWS)  # no target-alone pass needed
    with torch.no_grad():
        out = wrapped(**batch)
        # The reference: the model's own causal-LM loss on right-padded joint sequences.
        col = CALRecCollator(tokenizer, with_target_alone=False)
        enc = [col.encode(r) for r in ROWS]
        width = max(len(e["input_ids"]) for e in enc)
        ids = torch.tensor([e["input_ids"] + [tokenizer.pad_token_id] * (width - len(e["input_ids"])) for e in enc])
        mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in enc])
        labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"])) for e in enc])
        reference = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert out["loss"] is not None and out["tt"] is None and out["ut"] is None
    assert out["loss"].item() == out["nig"].item()
    assert out["loss"].item() == pytest.approx(reference.item(), abs=1e-5)


def test_overfitting_a_handful_of_examples_then_greedy_reproduces_targets(tiny_dir, tokenizer, tmp_path):
    from transformers import TrainingArguments

    from genrec.training.model import CALRecModel
    from genrec.training.trainer import CALRecTrainer

    model = _lora_model(tiny_dir, r=16, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"))
    wrapped = CALRecModel(model, LossConfig())
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=3, learning_rate=5e-3,
                             max_steps=60, lr_scheduler_type="constant", save_strategy="no", logging_steps=20,
                             report_to=[], remove_unused_columns=False, use_cpu=True, disable_tqdm=True,
                             train_sampling_strategy="sequential", seed=0)
    trainer = CALRecTrainer(model=wrapped, args=args, train_dataset=ROWS * 60,
                            data_collator=CALRecCollator(tokenizer), processing_class=tokenizer)
    trainer.train()
    logged = [r for r in trainer.state.log_history if "nig" in r]
    assert {"nig", "tt", "ut"} <= set(logged[-1])
    model.eval()
    for row in ROWS:
        ids = tokenizer(row["prompt"], return_tensors="pt").input_ids
        n = len(tokenizer(row["target"], add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert tokenizer.decode(out[0, ids.shape[1]:]) == row["target"]


def _curve(path: Path) -> dict[int, dict]:
    rows = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if "loss" in r:
            rows[r["step"]] = r  # a step logged again after resuming: the later record wins
    return rows


def test_killed_run_resumes_with_the_same_loss_curve(tiny_dir, tmp_path):
    from genrec.config import load_config
    from genrec.training import TrainConfig, run_stage

    common = [f"model={tiny_dir}", "datasets=[{format: demo, name: kitchen}]", "max_steps=6", "save_steps=2",
              "logging_steps=1", "batch_size=3", "max_tokens=96", "max_history=3", "precision=fp32",
              "validation.max_examples=0", "lora.dropout=0.1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_stage(load_config(TrainConfig, None, [*common, f"output_dir={whole}"]))
    # The same run as a separate process (the real script), killed with SIGKILL after its first checkpoint.
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, str(REPO / "finetune" / "train_calrec.py"), *common, "threads=1",
                             f"output_dir={killed}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "adapter").exists()
    result = run_stage(load_config(TrainConfig, None, [*common, f"output_dir={killed}"]))
    assert result.completed and result.global_step == 6 and (killed / "adapter" / "adapter_model.safetensors").exists()
    a, b = _curve(whole / "metrics.jsonl"), _curve(killed / "metrics.jsonl")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    # run.json: the killed invocation stays "running" under previous; the resumed one completed.
    rec = json.loads((killed / "run.json").read_text())
    assert rec["status"] == "completed" and rec["extra"]["global_step"] == 6 and rec["extra"]["completed"]
    assert [p["status"] for p in rec["previous"]] == ["running"]
    assert rec["config"]["lora"]["dropout"] == 0.1 and rec["seeds"] == {"seed": 0, "validation.seed": 0}
    demo, base = rec["inputs"]  # the data and the base model folder (a local model is an input too)
    assert demo == {"path": "demo:kitchen", "kind": "embedded", "sha256": None, "method": "embedded"}
    assert base["path"] == tiny_dir and base["kind"] == "folder" and base["sha256"]
    for step in a:
        for key in ("loss", "nig", "tt", "ut"):
            assert b[step][key] == pytest.approx(a[step][key], abs=1e-5), (step, key)


def test_rank_fn_scores_validation_users_with_qrr_grounding(tiny_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    from genrec.data.demo import demo_datasets
    from genrec.data.preprocess import leave_one_out
    from genrec.prompting import PromptTemplate
    from genrec.training.config import ValidationConfig
    from genrec.training.validation import make_rank_fn

    splits = {"kitchen": leave_one_out(demo_datasets()["kitchen"])}
    cfg = ValidationConfig(ranking_users=3, n_gen=2, n_preds=2, max_new_tokens=6)
    rank_fn = make_rank_fn(splits, PromptTemplate.load("calrec_compact"), tokenizer, cfg, prompt_tokens=80)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    first, again = rank_fn(model), rank_fn(model)
    assert set(first) == {"ndcg@10_expected", "ndcg@10", "ndcg@10_pes", "recall@10_expected", "recall@10"}
    assert 0.0 <= first["ndcg@10_pes"] <= first["ndcg@10_expected"] <= first["ndcg@10"] <= 1.0
    assert first == again  # a fixed user sample and seeded generation: comparable across checkpoints


def test_select_best_ndcg_reads_the_expected_value():
    """``select_best: ndcg@10`` (the old spelling kept working) selects by the expected NDCG@10, which
    a generation grounding to nothing cannot lift, never by the optimistic one."""
    from genrec.training.config import ValidationConfig

    assert ValidationConfig(select_best="ndcg@10").best_metric == "eval_ndcg@10_expected"
    assert ValidationConfig(select_best="ndcg@10_expected").best_metric == "eval_ndcg@10_expected"
    assert ValidationConfig(select_best="ndcg@10_pes").best_metric == "eval_ndcg@10_pes"
    assert ValidationConfig(select_best="last").best_metric is None


@pytest.mark.slow
def test_demo_stage1_then_stage2_on_smollm2_generates_parseable_items(tmp_path, smollm2_dir, tokenizer):
    """The demo configs end to end on the real SmolLM2-135M (CPU, minutes)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from genrec.config import load_config
    from genrec.data.demo import demo_datasets
    from genrec.data.preprocess import leave_one_out
    from genrec.prompting import PromptTemplate
    from genrec.training import TrainConfig, run_stage

    configs = REPO / "finetune" / "configs"
    s1 = run_stage(load_config(TrainConfig, configs / "demo_stage1.yaml", [f"output_dir={tmp_path / 's1'}"]))
    assert s1.completed and s1.weights_dir is not None
    s2 = run_stage(load_config(TrainConfig, configs / "demo_stage2.yaml",
                               [f"output_dir={tmp_path / 's2'}", f"init_adapter={s1.weights_dir}"]))
    assert s2.completed and s2.weights_dir is not None
    log = [json.loads(line) for line in s2.metrics_path.read_text().splitlines()]
    assert any("eval_ndcg@10" in r for r in log) and any("tt" in r and "ut" in r for r in log)

    template = PromptTemplate.load("calrec_compact")
    split = leave_one_out(demo_datasets()["electronics"])
    ex = split.valid[0]
    prompt = template.render_history([split.dataset.catalog[i] for i in ex.history[-8:]], tokenizer, 140)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.bfloat16)
    model = PeftModel.from_pretrained(base, str(s2.weights_dir)).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=48, do_sample=False,
                             stop_strings=[template.terminator], tokenizer=tokenizer,
                             pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    parsed = template.parse_target(text)
    assert parsed.get("title") and parsed.get("brand"), text
