"""Batch generation: a JSONL file of users in, JSONL of samples and grounded lists out.

    python inference/batch_generate.py --config inference/configs/batch_generate.yaml \
        bundle=my-bundle users=users.jsonl output=out.jsonl

Input lines: ``{"user": "u1", "history": ["item-a", "item-b", ...]}`` (oldest first).
Output lines: ``{"user", "path", "reason", "unknown_ids", "items": [{item_id, title, score}],
"samples": [{text, score}]}``; a user whose history cannot be answered (empty, no known
item) gets ``{"user", "error"}`` instead, so a rerun does not retry it forever.

A run record ``<output stem>.run.json`` (settings, input fingerprints, versions, seed, times)
is written beside the output. Resumable after a kill: users already in the output are skipped, new lines are appended, and
every line is flushed (fsynced at least every 2 s). A line cut short by the kill is removed before resuming.

With vLLM every user goes through one engine as a stream (``window`` users inside it at once, each
answered and written the moment its samples are finished, while the engine keeps generating), so
lines come in the order users finish; the transformers backend gets ``batch_size`` users per call,
in input order. Sampling uses ``seed``; with the transformers backend the output of a user is
reproducible for the same batch composition.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from genrec import console  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.data.jsonl import read_json_lines  # noqa: E402
from genrec.errors import ConfigError, DataError, GenrecError  # noqa: E402
from genrec.recommender import Recommendation, Recommender, RequestError  # noqa: E402


@dataclass
class BatchGenerateConfig:
    bundle: str = ""  # bundle directory (genrec bundle)
    users: str = ""  # input JSONL: {"user": ..., "history": [item ids]}
    output: str = ""  # output JSONL (appended to; users already there are skipped)
    batch_size: int = 8  # users per generation call when not streaming (transformers)
    window: int = 64  # vllm: users inside the engine at once (continuous batching over all users)
    k: int | None = None  # list length (default: the bundle's)
    exclude_history: bool | None = None  # default: the bundle's
    seed: int | None = 0  # sampling seed of every batch
    backend: str | None = None  # vllm | hf (default: the bundle's)
    n_gen: int | None = None  # override the bundle's N_gen
    generation: dict = field(default_factory=dict)  # overrides of the bundle's generation settings
    limit: int | None = None  # stop after this many users of the input (for trials)


def read_users(path: str | Path) -> Iterator[tuple[str, list]]:
    """(user, history ids) per line; a bad line is a DataError naming its line and field."""
    path = Path(path)
    seen: set[str] = set()
    for n, row in read_json_lines(path, "users file"):
        if "user" not in row:
            raise DataError(path, "missing", line=n, field="user")
        if not isinstance(row.get("history"), list):
            raise DataError(path, "must be a list of item ids", line=n, field="history")
        user = str(row["user"])
        if user in seen:
            raise DataError(path, f"user {user!r} appears twice", line=n, field="user")
        seen.add(user)
        yield user, row["history"]


def users_done(output: str | Path) -> set[str]:
    """Users already written; a last line cut short by a kill is truncated away first."""
    path = Path(output)
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is a partial line
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
        data = data[:end]
    done = set()
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            done.add(str(json.loads(line)["user"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(path, "not a batch_generate output line (delete the file to start over)",
                            line=n) from None
    return done


def record(user: str, rec: Recommendation | RequestError) -> dict[str, Any]:
    if isinstance(rec, RequestError):
        return {"user": user, "error": str(rec)}
    return {"user": user, "path": rec.path, "reason": rec.reason, "unknown_ids": rec.unknown_ids,
            "items": [it.to_dict() for it in rec.items],
            "samples": [{"text": s.text, "score": float(s.score)} for s in rec.samples]}


def run_record_path(output: str | Path) -> Path:
    """``out.jsonl`` -> ``out.run.json``: the run record beside the output."""
    p = Path(output)
    return p.with_name(p.stem + ".run.json")


def run_batch_generation(cfg: BatchGenerateConfig, recommender: Recommender | None = None,
                         tally: dict[str, int] | None = None) -> dict[str, int]:
    """Answer every user of ``cfg.users`` not yet in ``cfg.output``; returns counts. ``tally``
    (when given) counts this invocation's answers by path, and users with unknown item ids."""
    for name in ("users", "output"):
        if not getattr(cfg, name):
            raise ConfigError(f"batch_generate: `{name}` is required")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_generate: batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.window < 1:
        raise ConfigError(f"batch_generate: window must be at least 1, got {cfg.window}")
    users = list(read_users(cfg.users))
    if cfg.limit is not None:
        users = users[: cfg.limit]
    done = users_done(cfg.output)
    todo = [(u, h) for u, h in users if u not in done]
    counts = {"users": len(users), "skipped": len(users) - len(todo), "written": 0, "errors": 0}
    if not todo:
        return counts
    from genrec.run_record import describe_input, write_run_record

    started = time.time()
    record = run_record_path(cfg.output)
    inputs = [fp for item in (cfg.users, cfg.bundle) for fp in describe_input(item)]  # hashed once
    write_run_record(record, cfg, inputs, {"seed": cfg.seed}, started, status="running")
    tally = {} if tally is None else tally
    try:
        _generate(cfg, recommender, todo, counts, tally, len(users))
    except BaseException as e:
        write_run_record(record, cfg, inputs, {"seed": cfg.seed}, started, status="failed",
                         extra={"counts": counts, "error": f"{type(e).__name__}: {e}"})
        raise
    write_run_record(record, cfg, inputs, {"seed": cfg.seed}, started,
                     extra={"counts": counts, "paths": tally})
    return counts


def _generate(cfg: BatchGenerateConfig, recommender: Recommender | None, todo: list, counts: dict[str, int],
              tally: dict[str, int], n_users: int) -> None:
    if recommender is None:
        if not cfg.bundle:
            raise ConfigError("batch_generate: `bundle` is required")
        import dataclasses

        from genrec.bundle import Bundle

        bundle = Bundle.load(cfg.bundle)
        settings = bundle.settings.recommender
        if cfg.n_gen is not None:
            settings = dataclasses.replace(settings, n_gen=cfg.n_gen)
        recommender = bundle.recommender(backend=cfg.backend, settings=settings, **cfg.generation)
    Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
    with open(cfg.output, "a", encoding="utf-8") as out, \
            console.progress(total=n_users, initial=counts["skipped"], unit="user", desc="batch generate") as bar:
        synced = time.time()

        def write(user: str, rec: Recommendation | RequestError) -> None:
            nonlocal synced
            out.write(json.dumps(record(user, rec), ensure_ascii=False) + "\n")
            out.flush()
            if time.time() - synced > 2.0:
                os.fsync(out.fileno())
                synced = time.time()
            counts["errors" if isinstance(rec, RequestError) else "written"] += 1
            if not isinstance(rec, RequestError):
                tally[rec.path] = tally.get(rec.path, 0) + 1
                if rec.unknown_ids:
                    tally["with_unknown_ids"] = tally.get("with_unknown_ids", 0) + 1
            bar.update(1)

        from genrec.generation.streaming import can_stream

        if can_stream(recommender.generator):
            for user, rec in answer_stream(recommender, todo, cfg):
                write(user, rec)
        else:  # batch_size users per generate call, lines in input order
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start:start + cfg.batch_size]
                recs = recommender.recommend_many([h for _, h in batch], k=cfg.k,
                                                  exclude_history=cfg.exclude_history, seed=cfg.seed,
                                                  errors="return")
                for (user, _), rec in zip(batch, recs, strict=True):
                    write(user, rec)
        out.flush()
        os.fsync(out.fileno())


def answer_stream(recommender: Recommender, todo: list, cfg: BatchGenerateConfig) -> Iterator[tuple[str, Any]]:
    """(user, answer or RequestError) for every user of ``todo``, each as soon as it is ready.

    Histories that cannot be answered come first (no generation needed); the others stream
    through the generator (:func:`genrec.generation.streaming.stream_samples`) and are grounded
    one by one. If generation fails, the users not yet answered get the fallback, saying why
    (as ``Recommender.recommend_many`` does), and are written like any other answer.
    """
    from genrec.generation.streaming import stream_samples

    live: list[tuple[str, Any]] = []
    for user, history in todo:
        try:
            live.append((user, recommender.prepare(history, cfg.k, cfg.exclude_history)))
        except RequestError as e:
            yield user, e
    if not live:
        return
    answered: set[int] = set()
    try:
        for i, samples in stream_samples(recommender.generator, [p.prompt for _, p in live],
                                         n=recommender.settings.n_gen, seed=cfg.seed, chunk=cfg.batch_size,
                                         window=cfg.window):
            answered.add(i)
            yield live[i][0], recommender.ground(live[i][1], samples)
    except GenrecError:
        raise
    except Exception as e:  # an engine failure is answered by the fallback, as recommend_many does
        import logging

        logging.getLogger(__name__).exception("generation failed")
        reason = f"generation failed: {type(e).__name__}: {e}"
        for i, (user, p) in enumerate(live):
            if i not in answered:
                yield user, recommender.fallback(p, reason)


def main(argv: list[str] | None = None) -> int:
    """Progress and a summary on the console, engine logs in ``<output folder>/logs``; the last
    stdout line is the counts as JSON (for scripts that call this one)."""
    cfg = parse_args(BatchGenerateConfig, argv, description=__doc__.splitlines()[0])
    output = Path(cfg.output or ".")
    log_file = console.setup(output.parent / "logs", f"batch_generate-{output.stem}", capture_fds=argv is None)
    tally: dict[str, int] = {}
    try:
        with console.step(None, None, f"batch generation: {cfg.users} -> {cfg.output}") as st:
            console.say(f"  logs: {log_file}")
            counts = run_batch_generation(cfg, tally=tally)
            paths = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()) if k != "with_unknown_ids")
            st.done(f"{counts['written']} answered ({paths or 'none new'}), {counts['errors']} unanswerable, "
                    f"{counts['skipped']} already done; run record {run_record_path(cfg.output)}")
    except GenrecError as e:
        console.error(f"batch_generate: {e}")
        return 2
    if tally.get("with_unknown_ids"):
        console.warn(f"{tally['with_unknown_ids']} users' histories hold item ids the catalog lacks; they were "
                     "ignored (each output line lists them under unknown_ids)")
    if counts["errors"]:
        console.warn(f"{counts['errors']} users could not be answered (no known item); their lines hold an error")
    fallback = sum(v for k, v in tally.items() if k not in ("generative", "with_unknown_ids"))
    if fallback:
        console.warn(f"{fallback} users were answered by the fallback, not by generation (see path and reason)")
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
