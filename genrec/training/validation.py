"""Ranking validation during training: NDCG@10 of QRR-grounded generations (SPEC.md §1 inference).

``make_rank_fn`` fixes a seeded sample of validation users per category once; the returned
``rank_fn(model)`` generates ``n_gen`` samples per user with the model being trained (HF
backend, seeded), grounds them with BM25 QRR over the category's catalog and returns the
mean NDCG@10 over all sampled users, expected under random tie-breaking (the headline, SPEC.md
§12) beside the optimistic and pessimistic values. ``CALRecTrainer`` runs it at each evaluation,
and ``validation.select_best: ndcg@10`` picks the final adapter by the expected value.
"""

from __future__ import annotations

import numpy as np

from genrec.data.dataset import Split
from genrec.data.preprocess import truncate_history
from genrec.prompting import PromptTemplate
from genrec.training.config import TrainConfig, ValidationConfig


def make_rank_fn(splits: dict[str, Split], template: PromptTemplate, tokenizer, cfg: ValidationConfig,
                 prompt_tokens: int, max_history: int | None = None):
    from genrec.grounding import BM25Index

    per = max(1, cfg.ranking_users // max(1, len(splits)))
    plans = []
    for ci, (name, split) in enumerate(splits.items()):
        valid = split.valid
        if not valid:
            continue
        idx = np.sort(np.random.default_rng([cfg.seed, ci, 7]).choice(len(valid), min(per, len(valid)),
                                                                     replace=False))
        examples = [valid[i] for i in idx]
        cat = split.dataset.catalog
        index = BM25Index.build([template.render_target_item(it) for it in cat])
        prompts = [template.render_history([cat[i] for i in truncate_history(ex.history, max_history)],
                                           tokenizer, prompt_tokens) for ex in examples]
        plans.append((name, examples, index, prompts))

    def rank_fn(model) -> dict[str, float]:
        from genrec.generation.base import GenerationConfig
        from genrec.generation.hf import HFGenerator
        from genrec.grounding import qrr_batch
        from genrec.metrics import expected_from_ranks, metrics_from_ranks, ranks

        gen = HFGenerator(GenerationConfig(backend="hf", n=cfg.n_gen, max_new_tokens=cfg.max_new_tokens,
                                           temperature=cfg.temperature, stop=template.terminator, seed=cfg.seed),
                          model=model, tokenizer=tokenizer)
        opts, pess = [], []
        for _name, examples, index, prompts in plans:
            samples = gen.generate(prompts)
            scores = qrr_batch(samples, index, cfg.n_preds, cfg.eps)
            targets = np.array([ex.target for ex in examples])
            exclude = [list(ex.history) for ex in examples] if cfg.mask_history else None
            opt, pes = ranks(scores, targets, exclude)
            opts.append(opt)
            pess.append(pes)
        if not opts:
            return {}
        opt, pes = np.concatenate(opts), np.concatenate(pess)
        opt_m, pes_m, exp_m = metrics_from_ranks(opt), metrics_from_ranks(pes), expected_from_ranks(opt, pes)
        return {"ndcg@10_expected": exp_m["ndcg@10"], "ndcg@10": opt_m["ndcg@10"], "ndcg@10_pes": pes_m["ndcg@10"],
                "recall@10_expected": exp_m["recall@10"], "recall@10": opt_m["recall@10"]}

    return rank_fn


def ut_by_tau(batch_scores: list, taus: list[float], batch_size: int) -> dict:
    """Validation L_UT from each validation batch's ``scores[j, i]`` (user j, row i's target), at
    every τ of ``taus``: InfoNCE over the users (:func:`info_nce_of_scores`), averaged over rows,
    the best τ, and chance (ln of the batch size). One reading for ID scorers and the LLM."""
    import math

    from genrec.training.losses import info_nce_of_scores

    rows = sum(s.shape[0] for s in batch_scores)
    by_tau = {tau: round(sum(float(info_nce_of_scores(s, tau)) * s.shape[0] for s in batch_scores) / rows, 4)
              for tau in taus}
    best = min(by_tau, key=by_tau.get)
    return {"by_tau": by_tau, "best_tau": best, "best": by_tau[best], "rows": rows,
            "chance": round(math.log(batch_size), 4)}


def scorer_ut_reference(cfg: TrainConfig, scorer_dirs: dict[str, str], taus: list[float]) -> dict[str, dict]:
    """Validation L_UT of ID models on a run's own validation rows and batches (``cfg``: its
    TrainConfig): for each scorer, InfoNCE over the users of each validation batch with its
    scores / τ, at every τ of ``taus`` and the best. Says how far below chance (ln of the
    batch) a strong sequential recommender gets on the same rows — the scale for the LLM's L_UT.
    τ is chosen on the rows themselves, so "best" flatters the scorers, never the LLM."""
    import torch

    from genrec.esr import FallbackScorer
    from genrec.training.data import load_splits, validation_sample

    splits = load_splits(cfg.datasets, cfg.kcore, cfg.cold, cfg.cold_dataset)
    rows = [ex for _name, ex in validation_sample(splits, cfg.validation.max_examples, cfg.validation.seed)]
    bs = cfg.validation.batch_size
    targets = torch.tensor([e.target for e in rows])
    out: dict[str, dict] = {}
    for name, folder in scorer_dirs.items():
        scores = torch.as_tensor(np.asarray(FallbackScorer.load(folder).score_batch([list(e.history) for e in rows])))
        out[name] = ut_by_tau([scores[b:b + bs][:, targets[b:b + bs]] for b in range(0, len(rows), bs)], taus, bs)
    return out


def calrec_ut_by_tau(cfg: TrainConfig, weights: str, taus: list[float]) -> dict:
    """Validation L_UT of a CALRec checkpoint (``weights``: a full fine-tune's model folder or a
    LoRA adapter, with its heads) at each τ of ``taus`` and at its training τ, on the run's own
    validation rows and batches. The LLM's user vector read the way :func:`scorer_ut_reference`
    reads an ID model's scores (its cosines as scores), so both compare at each one's best temperature."""
    import dataclasses

    import torch.nn.functional as F

    from genrec.prompting import PromptTemplate
    from genrec.training.collator import CALRecCollator
    from genrec.training.data import ValidationRows, load_splits
    from genrec.training.model_loading import load_trainable_model

    run = dataclasses.replace(cfg, **({"model": weights} if cfg.tuning == "full" else {"init_adapter": weights}))
    wrapped, tokenizer, _ = load_trainable_model(run)
    wrapped.eval()
    v = cfg.validation
    rows = ValidationRows(load_splits(cfg.datasets, cfg.kcore, cfg.cold, cfg.cold_dataset), PromptTemplate.load(cfg.template), tokenizer,
                          cfg.max_tokens, cfg.max_history, v.max_examples, v.seed)
    collator = CALRecCollator(tokenizer, cfg.max_tokens, cfg.max_target_tokens, with_target_alone=True)
    cosines = []
    for b in range(0, len(rows), v.batch_size):
        v_u, _, v_t = wrapped.embed(**collator([rows[i] for i in range(b, min(b + v.batch_size, len(rows)))]))
        cosines.append(F.normalize(v_u.float(), dim=-1, eps=1e-8) @ F.normalize(v_t.float(), dim=-1, eps=1e-8).T)
    trained_tau = cfg.loss.temperatures[1]
    out = ut_by_tau(cosines, sorted(set(taus) | {trained_tau}), v.batch_size)
    return {**out, "trained_tau": trained_tau, "at_trained_tau": out["by_tau"][trained_tau]}
