"""Train the LLM-ESR fallback (or the SASRec / popularity baselines) and evaluate it on the test split.

    python finetune/train_esr.py --config finetune/configs/esr_scientific.yaml
    python finetune/train_esr.py --config finetune/configs/sasrec_scientific.yaml train.epochs=50
    python finetune/train_esr.py --config finetune/configs/esr_demo.yaml esr.distill=false output_dir=runs/x

Leave-one-out split; early stopping on validation NDCG@10 (full ranking, history masked);
the best model is saved as a servable scorer (``<output_dir>/scorer``), the test metrics
overall and for head/tail users and items go to ``<output_dir>/results.json``. Killed runs
resume from ``<output_dir>/checkpoints/last.pt`` when started again with the same settings.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec.cache import cache_dir  # noqa: E402
from genrec.config import parse_args, to_dict  # noqa: E402
from genrec.data.groups import head_items, head_users  # noqa: E402
from genrec.data.preprocess import leave_one_out  # noqa: E402
from genrec.data.source import DatasetSource  # noqa: E402
from genrec.errors import ConfigError, GenrecError  # noqa: E402
from genrec.esr import (  # noqa: E402
    DualViewModel,
    EncoderConfig,
    ESRConfig,
    FallbackScorer,
    PopularityScorer,
    TrainConfig,
    Trainer,
    evaluate,
    item_embeddings,
    make_encoder,
    similar_users,
    user_embeddings,
)
from genrec.esr.embeddings import user_embeddings_from_items  # noqa: E402
from genrec.metrics import evaluate_ranking, format_group_table, format_table  # noqa: E402

log = logging.getLogger("train_esr")


@dataclass
class Settings:
    dataset: DatasetSource = field(default_factory=lambda: DatasetSource(format="demo", name="electronics"))
    model: str = "llmesr"  # llmesr | sasrec | popularity
    esr: ESRConfig = field(default_factory=ESRConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # item (and user) text encoder
    user_embeddings: str = "prompt"  # prompt (LLM-ESR user prompt) | item_mean (mean of training-item vectors)
    cache: str = ""  # embedding cache folder; default <genrec cache>/esr/<dataset>-<catalog fingerprint>
    output_dir: str = "runs/esr"
    mask_history: bool = True  # history items excluded from the ranking (stated in every report)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_args(Settings, argv, description=__doc__.splitlines()[0])
    if cfg.model not in ("llmesr", "sasrec", "popularity"):
        raise ConfigError(f"model must be llmesr, sasrec or popularity, got {cfg.model!r}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = cfg.dataset.load()
    split = leave_one_out(ds)
    log.info("%s; %d validation and %d test users", ds.stats_line(), len(split.valid), len(split.test))
    n_items = len(ds.catalog)
    summary: dict = {}
    t0 = time.perf_counter()
    if cfg.model == "popularity":
        scorer = PopularityScorer.from_training(split.train, n_items)
        scorer.save(out / "scorer")
    else:
        esr = ESRConfig.sasrec(hidden=cfg.esr.hidden, layers=cfg.esr.layers, heads=cfg.esr.heads,
                               dropout=cfg.esr.dropout, max_len=cfg.esr.max_len) if cfg.model == "sasrec" else cfg.esr
        cache = Path(cfg.cache) if cfg.cache else cache_dir() / "esr" / f"{ds.name}-{ds.catalog.fingerprint()}"
        item_vecs, similar = None, None
        needs_llm = esr.uses_semantic or esr.co_init == "pca"
        if needs_llm or esr.distill:
            encoder = make_encoder(cfg.encoder)
            t_emb = time.perf_counter()
            item_vecs = item_embeddings(ds.catalog, encoder, cache)
            summary["item_embedding_s"] = round(time.perf_counter() - t_emb, 1)
            if esr.distill:
                t_emb = time.perf_counter()
                if cfg.user_embeddings == "prompt":
                    users, user_vecs = user_embeddings(ds.catalog, split.train, encoder, cache)
                elif cfg.user_embeddings == "item_mean":
                    users, user_vecs = user_embeddings_from_items(split.train, item_vecs)
                else:
                    raise ConfigError(f"user_embeddings must be prompt or item_mean, got {cfg.user_embeddings!r}")
                nn = similar_users(user_vecs, esr.n_similar)
                similar = {u: [users[j] for j in row] for u, row in zip(users, nn)}
                summary["user_embedding_s"] = round(time.perf_counter() - t_emb, 1)
        model = DualViewModel(esr, n_items, item_vecs)
        log.info("%s: %d trainable parameters", cfg.model, sum(p.numel() for p in model.parameters() if p.requires_grad))
        trainer = Trainer(model, split.train, split.valid, cfg.train, out / "checkpoints", similar)
        fit = trainer.fit()
        summary.update({k: v for k, v in fit.items() if k != "history"})
        scorer = FallbackScorer(model, meta={"model": cfg.model, "dataset": ds.name,
                                             "catalog_fingerprint": ds.catalog.fingerprint()})
        scorer.save(out / "scorer")
    summary["train_total_s"] = round(time.perf_counter() - t0, 1)
    t_eval = time.perf_counter()
    opt, pes = evaluate(scorer, split.test, mask_history=cfg.mask_history)
    report = evaluate_ranking(opt, pes, [e.user for e in split.test], [e.target for e in split.test],
                              head_users(split.train), head_items(split.train, n_items))
    summary["test_eval_s"] = round(time.perf_counter() - t_eval, 1)
    result = {"model": cfg.model, "dataset": ds.name, "mask_history": cfg.mask_history, "split": "leave_one_out",
              "ranking": "full catalog", "test": report, "training": summary, "settings": to_dict(cfg)}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(format_table({cfg.model: report}))
    print(format_group_table({cfg.model: report}))
    print(f"seconds/epoch: {summary.get('seconds_per_epoch', 0):.2f}; results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GenrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
