"""The HTTP service: ``POST /recommend``, ``GET /items?q=`` (catalog search), ``GET /health``,
``GET /metrics`` (Prometheus), and a page at ``/`` to try it by hand (genrec.web_page).

FastAPI on uvicorn. Generation runs in **vLLM's async engine inside the server process**
(``AsyncLLM``), not behind vLLM's OpenAI-compatible server, because:

* the latency budget needs a real abort: with the engine in-process, a request that overruns
  is aborted by id (``engine.abort``) the moment its budget expires, and the engine's
  unfinished-request count is visible to ``/health`` and ``/metrics`` to prove it. Through the
  OpenAI server, an abort is a dropped HTTP connection whose effect we cannot observe;
* the scores QRR grounding needs (the summed token log-prob under the model's own
  distribution) come straight from the engine's outputs, with no JSON round trip of
  ``logprobs`` per token for N_gen samples;
* one process, one port, one health check to deploy; the engine's continuous batching still
  merges concurrent requests, which is what the OpenAI server would add.

The OpenAI server would win if the engine had to scale apart from the API (several API
replicas sharing one GPU engine); that is not this service's job.

Without vLLM (or with ``backend: hf``), the transformers backend runs generation in a
single-thread executor: requests queue there, and one past its budget is answered by the
fallback; a transformers ``generate`` already running cannot be interrupted, so it finishes
and its result is discarded (a queued one is cancelled before it starts).

Admission control (genrec.admission, SPEC.md §8): a request goes to the engine only if the
measured throughput and the requests already in flight say it can finish inside its budget
(less ``server.admission.reserve_ms`` kept to answer from the fallback after an abort); the
others are answered from the fallback at once, ``reason`` saying so. The estimates are seeded at
start-up by ``warmup_requests`` generations and learnt from every request that leaves the engine.
``/metrics`` counts admitted (``genrec_admitted_total``), shed (``genrec_shed_total``) and
aborted (``genrec_engine_aborts_total``) requests.

Every request is answered by the generative path or, saying why, by the fallback (the
LLM-ESR model, or training popularity when the bundle has none). Bad input gets a 4xx whose
``error`` names the problem, never a 500.

The catalog can change while serving (genrec.live_catalog): ``POST /items`` (a JSON list of
items), ``PUT /items/{id}`` (fields to change), ``DELETE /items/{id}`` (withdraw) and
``POST /items/{id}/restore``, each applied durably and then published by replacing the one
recommender reference, so a request finishes on the catalog it started with and every request
after the answer sees the change. Writes need the admin token the server was started with
(``Authorization: Bearer <token>``; 401 without, 403 wrong or none configured); reads stay open
(``GET /items/{id}``). The token is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import hmac
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from genrec.admission import AdmissionController
from genrec.bundle import Bundle
from genrec.errors import ConfigError, GenrecError
from genrec.live_catalog import CatalogChangeError, CatalogSnapshot, change_summary
from genrec.recommender import (
    MODE_QRR,
    PATH_GENERATIVE,
    PATHS,
    Prepared,
    Recommendation,
    Recommender,
    RequestError,
)

log = logging.getLogger(__name__)

MAX_BUDGET_MS = 600_000.0
MAX_SEARCH_LIMIT = 200
REQUEST_FIELDS = ("history", "k", "budget_ms", "exclude_history", "mode", "fusion")
ADMIN_TOKEN_ENV = "GENREC_ADMIN_TOKEN"


# -- generation backends ---------------------------------------------------------------------
class GenerationBackend(Protocol):
    """One prompt → N samples, cancellable by request id; counts what it has in flight."""

    name: str
    tokenizer: Any

    async def start(self) -> None: ...

    async def sample(self, prompt: str, n: int, seed: int | None, request_id: str) -> list[Any]: ...

    async def cancel(self, request_id: str) -> bool: ...

    def unfinished(self) -> int: ...

    async def close(self) -> None: ...


class VLLMBackend:
    """vLLM's async engine in this process (genrec.generation's ``AsyncVLLMGenerator``)."""

    name = "vllm"

    def __init__(self, gen_config: Any) -> None:
        self.gen_config = gen_config
        self.engine: Any = None
        self.tokenizer: Any = None
        self.in_flight: set[str] = set()

    async def start(self) -> None:
        from genrec.generation.vllm_backend import AsyncVLLMGenerator

        # Built inside the running event loop: AsyncLLM binds its output handler to it.
        self.engine = AsyncVLLMGenerator(self.gen_config)
        self.tokenizer = self.engine.tokenizer

    async def sample(self, prompt: str, n: int, seed: int | None, request_id: str) -> list[Any]:
        self.in_flight.add(request_id)
        try:
            samples = await self.engine.generate_one(prompt, request_id, n=n)
        except asyncio.CancelledError:
            raise  # past its budget: still ours to abort (cancel() clears it)
        except BaseException:
            self.in_flight.discard(request_id)
            raise
        self.in_flight.discard(request_id)
        return samples

    async def cancel(self, request_id: str) -> bool:
        """Abort in the engine. Cancelling the awaiting task already aborts there; the explicit
        call makes sure, and is a no-op for an id the engine no longer holds."""
        was_running = request_id in self.in_flight
        await self.engine.abort(request_id)
        self.in_flight.discard(request_id)
        return was_running

    def unfinished(self) -> int:
        return int(self.engine.num_unfinished()) if self.engine is not None else 0

    async def close(self) -> None:
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.shutdown()


class ThreadBackend:
    """A blocking generator (transformers) in a single worker thread."""

    name = "hf"

    def __init__(self, gen_config: dict | None = None, generator: Any = None) -> None:
        self.gen_config = gen_config
        self.generator = generator
        self.tokenizer: Any = getattr(generator, "tokenizer", None)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="genrec-gen")
        self.futures: dict[str, concurrent.futures.Future] = {}

    async def start(self) -> None:
        if self.generator is None:
            from genrec.generation import make_generator

            self.generator = await run_in_threadpool(make_generator, self.gen_config)
        self.tokenizer = getattr(self.generator, "tokenizer", None)

    async def sample(self, prompt: str, n: int, seed: int | None, request_id: str) -> list[Any]:
        fut = self.pool.submit(self.generator.generate, [prompt], n, seed)
        self.futures[request_id] = fut
        # Shielded: a budget timeout must not silently drop the future; cancel() decides its fate.
        result = await asyncio.shield(asyncio.wrap_future(fut))
        self.futures.pop(request_id, None)
        return result[0]

    async def cancel(self, request_id: str) -> bool:
        """Cancel a queued call (True); a running one cannot be stopped and is left to finish."""
        fut = self.futures.get(request_id)
        if fut is None:
            return False
        if fut.cancel():
            self.futures.pop(request_id, None)
            return True
        fut.add_done_callback(lambda _f: self.futures.pop(request_id, None))
        return False

    def unfinished(self) -> int:
        return sum(1 for f in list(self.futures.values()) if not f.done())

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_backend(bundle: Bundle, backend: str | None = None, generator: Any = None,
                 **gen_overrides: Any) -> GenerationBackend:
    if generator is not None:
        return ThreadBackend(generator=generator)
    cfg = bundle.generation_config(backend, **gen_overrides)
    from genrec.generation import resolve_backend

    if resolve_backend(cfg.backend) == "vllm":
        if "cpu_binding" not in bundle.settings.generation and "cpu_binding" not in gen_overrides:
            # The server keeps vLLM's own CPU binding (one core left to the scheduler, this
            # process and its fallback answers), unlike offline jobs: measured with the demo
            # bundle on this 2-core machine while another job held a core (bench/serve_load.py),
            # binding both cores made one request alone take 4.8 s instead of 2.5 s (an OpenMP
            # thread on the busy core stalls every step) and shed answers waited longer.
            import dataclasses

            cfg = dataclasses.replace(cfg, cpu_binding="default")
        return VLLMBackend(cfg)
    return ThreadBackend(cfg)


# -- metrics ---------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics in a registry of this app's own (several apps may share a process)."""

    def __init__(self, backend: GenerationBackend) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("genrec_requests", "Requests by answering path and HTTP status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("genrec_request_latency_seconds", "Request latency by answering path", ["path"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.fallbacks = Counter("genrec_fallbacks", "Answers from the fallback, by reason", ["reason"],
                                 registry=self.registry)
        self.aborts = Counter("genrec_engine_aborts", "Generation requests aborted in the engine past their budget",
                              registry=self.registry)
        self.admitted = Counter("genrec_admitted", "Requests admitted to the generation engine",
                                registry=self.registry)
        self.shed = Counter("genrec_shed", "Requests answered by the fallback at once: the engine could not finish "
                            "them inside their budget", registry=self.registry)
        self.fallback_rate = Gauge("genrec_fallback_rate", "Share of answered requests the fallback answered",
                                   registry=self.registry)
        self.unfinished = Gauge("genrec_engine_unfinished_requests",
                                "Requests the generation engine is running or holding", registry=self.registry)
        self.unfinished.set_function(backend.unfinished)
        self.answered = 0
        self.answered_by_fallback = 0
        self.abort_count = 0

    def observe(self, path: str, status: int, seconds: float, reason: str | None = None) -> None:
        self.requests.labels(path=path, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)
        if path in PATHS:
            self.answered += 1
            if path != PATH_GENERATIVE:
                self.answered_by_fallback += 1
                self.fallbacks.labels(reason=reason_kind(reason)).inc()
            self.fallback_rate.set(self.answered_by_fallback / self.answered)


def reason_kind(reason: str | None) -> str:
    """A short label for a fallback reason (metrics labels must have few values)."""
    text = (reason or "").lower()
    for key, kind in (("shed:", "shed"), ("budget", "budget"), ("generation failed", "generation_error"),
                      ("grounding failed", "grounding_error"), ("no usable", "no_usable_text"),
                      ("matched no", "no_match"), ("no generator", "no_generator")):
        if key in text:
            return kind
    return "other"


# -- request parsing -------------------------------------------------------------------------
class Problem(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass
class RecommendRequest:
    history: list
    k: int | None
    budget_ms: float
    exclude_history: bool | None
    mode: str | None = None    # a generative mode for this request (None: the bundle's)
    fusion: str | None = None  # none | zsum | rrf for this request (None: the bundle's)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise Problem(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
        except ValueError:
            raise Problem(400, f"invalid Content-Length header {declared!r}") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes, default_budget_ms: float) -> RecommendRequest:
    if not body.strip():
        raise Problem(400, "empty request body; send a JSON object like {\"history\": [...], \"k\": 10}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Problem(400, f"request body is not valid UTF-8: byte 0x{body[e.start]:02x} at position {e.start}") \
            from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise Problem(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise Problem(422, f"request body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(REQUEST_FIELDS))
    if unknown:
        raise Problem(422, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(REQUEST_FIELDS)}",
                      field=unknown[0])
    if "history" not in data:
        raise Problem(422, "missing field: a list of item ids, oldest first", field="history")
    history = data["history"]
    if not isinstance(history, list):
        raise Problem(422, f"must be a list of item ids, got {type(history).__name__}", field="history")
    k = data.get("k")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
        raise Problem(422, f"must be an integer, got {k!r}", field="k")
    budget = data.get("budget_ms", default_budget_ms)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) \
            or budget <= 0 or budget > MAX_BUDGET_MS:
        raise Problem(422, f"must be a number of milliseconds in (0, {MAX_BUDGET_MS:.0f}], got {budget!r}",
                      field="budget_ms")
    excl = data.get("exclude_history")
    if excl is not None and not isinstance(excl, bool):
        raise Problem(422, f"must be true or false, got {excl!r}", field="exclude_history")
    for name in ("mode", "fusion"):  # the values are checked by the recommender
        if data.get(name) is not None and not isinstance(data[name], str):
            raise Problem(422, f"must be a string, got {data[name]!r}", field=name)
    return RecommendRequest(history, k, float(budget), excl, data.get("mode"), data.get("fusion"))


def search_items(bundle: Bundle, query: str, limit: int, item_id: str | None = None) -> tuple[list[dict], int]:
    """Catalog items whose title (or id) contains every word of ``query``, most popular first;
    ``item_id`` looks one id up exactly. Returns (first ``limit`` matches, number of matches).
    Withdrawn items are found (histories may hold them) and say so."""
    snap = bundle.snapshot
    catalog, pop = snap.catalog, snap.popularity
    if item_id is not None:
        i = catalog.get_index(item_id)
        hits = [] if i is None else [i]
    else:
        words = query.lower().split()
        hits = [i for i, it in enumerate(catalog)
                if all(w in it.title.lower() or w in it.item_id.lower() for w in words)]
        hits.sort(key=lambda i: (-int(pop[i]), i))
    return ([{"item_id": catalog[i].item_id, "title": catalog[i].title, "popularity": int(pop[i]),
              "withdrawn": bool(snap.withdrawn[i])} for i in hits[:limit]], len(hits))


def _problem_response(p: Problem) -> JSONResponse:
    body = {"error": p.message}
    if p.field:
        body["field"] = p.field
    return JSONResponse(body, status_code=p.status)


# -- the app ---------------------------------------------------------------------------------
class Service:
    """What a running app holds: the bundle, the recommender, the generation backend, metrics."""

    def __init__(self, bundle: Bundle, backend: GenerationBackend, max_body_bytes: int | None = None,
                 admin_token: str | None = None) -> None:
        self.bundle = bundle
        self.admin_token = admin_token or None
        self.backend = backend
        self.settings = bundle.settings
        self.max_body_bytes = max_body_bytes or bundle.settings.server.max_body_bytes
        self.metrics = Metrics(backend)
        self.admission = AdmissionController(bundle.settings.server.admission)
        self.recommender: Recommender | None = None
        self.ready = False
        self.tokenizer: Any = None
        self._catalog_write = threading.Lock()

    def make_recommender(self, snapshot: CatalogSnapshot | None = None) -> Recommender:
        """A recommender over one catalog snapshot; the constrained generator of the current one
        (when built) is handed on rather than loaded again."""
        # the constrained modes and reranking run on the transformers generator (the hf
        # backend's own, else one the bundle builds on first use)
        constrained = getattr(self.backend, "generator", None)
        if constrained is None and self.recommender is not None and not callable(self.recommender._constrained):
            constrained = self.recommender._constrained
        return self.bundle.recommender(generator=_NoGenerator(), tokenizer=self.tokenizer,
                                       constrained_generator=constrained, snapshot=snapshot)

    def change_catalog(self, op: str, body: bytes | None, payload_of) -> dict:
        """Apply a catalog change (in a worker thread, the body parsed there too, paced by
        ``server.catalog_change_duty``), then publish the recommender over the new snapshot: one
        reference swap."""
        data = None
        if body is not None:
            try:
                data = json.loads(body.decode("utf-8")) if body.strip() else None
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise Problem(400, f"request body is not valid JSON: {e}") from None
        payload = payload_of(data)
        with self._catalog_write, _short_gil_slices():
            snap = self.bundle.change_catalog(op, payload, self.settings.server.max_catalog_batch,
                                              self.settings.server.catalog_change_duty)
            # the parts the old snapshot had loaded (index, fallback, tree, vectors) are built by now
            self.recommender = self.make_recommender(snap)
            gc.freeze()  # the new catalog's objects too (see start)
            return change_summary(snap, op, len(payload))

    async def start(self) -> None:
        await self.backend.start()
        tokenizer = self.backend.tokenizer
        if tokenizer is None:  # exact token counts for the prompt budget
            from transformers import AutoTokenizer

            tokenizer = await run_in_threadpool(AutoTokenizer.from_pretrained, self.bundle.model_path)
        self.tokenizer = tokenizer
        self.recommender = self.make_recommender()
        _ = self.bundle.index, self.bundle.fallback_scorer  # load before the first request
        if self.recommender.settings.mode != MODE_QRR:  # the bundle's mode: its tree and generator now
            await run_in_threadpool(self.recommender.warm)
        await self.warm_up()
        # A large catalog is millions of long-lived objects: moved out of the cyclic collector's
        # reach, a full collection (set off by any burst of allocations, e.g. a catalog change)
        # no longer walks them all while holding the GIL and stalling every request.
        gc.freeze()
        self.ready = True

    async def warm_up(self) -> None:
        """``warmup_requests`` generations of a typical prompt (the most popular items as the
        history) before the first request; the last one's latency seeds the admission estimates.
        A failure here is logged, not fatal: the estimates are then learnt from real requests."""
        rec = self.recommender
        count = self.admission.settings.warmup_requests
        if rec is None or count <= 0:
            return
        top = sorted(range(len(self.bundle.catalog)), key=lambda i: (-int(self.bundle.popularity[i]), i))[:5]
        try:
            prepared = rec.prepare([self.bundle.catalog[i].item_id for i in top])
            for j in range(count):
                t = time.perf_counter()
                await self.backend.sample(prepared.prompt, rec.settings.n_gen, rec.settings.seed,
                                          f"genrec-warmup-{j}-{uuid.uuid4().hex}")
                seconds = time.perf_counter() - t
            self.admission.seed(seconds)
            log.info("admission seeded: one request alone takes %.0f ms", seconds * 1000)
        except Exception:
            log.exception("warm-up generation failed; admission learns from the first requests instead")

    async def answer(self, prepared: Prepared, budget_ms: float, t0: float, mode: str | None = None,
                     fusion: str | None = None, rec: Recommender | None = None) -> Recommendation:
        """``rec``: the recommender the request started with (its catalog snapshot)."""
        rec = rec or self.recommender
        assert rec is not None
        remaining = budget_ms / 1000.0 - (time.perf_counter() - t0)
        if remaining <= 0:
            return await run_in_threadpool(rec.fallback, prepared, f"latency budget of {budget_ms:g} ms "
                                                                    "used up before generation")
        mode = rec.check_mode(mode)
        if mode != MODE_QRR:  # decoding onto the catalog / reranking: a blocking call in a thread
            work = asyncio.ensure_future(run_in_threadpool(rec.answer_prepared, [prepared], rec.settings.seed,
                                                           mode, fusion))
            try:
                return (await asyncio.wait_for(asyncio.shield(work), remaining))[0]
            except TimeoutError:  # a running forward pass cannot be stopped: it finishes unseen
                return await run_in_threadpool(
                    rec.fallback, prepared, f"latency budget of {budget_ms:g} ms exceeded; {mode} abandoned")
        admission = self.admission
        if admission.settings.enabled:  # keep the reserve to answer from the fallback after an abort
            remaining -= admission.settings.reserve_ms / 1000.0
        decision = admission.decide(remaining)
        if not decision.admit:  # it could not finish in time: the fallback answers now
            self.metrics.shed.inc()
            return await run_in_threadpool(rec.fallback, prepared, f"{decision.reason} ({budget_ms:g} ms)")
        self.metrics.admitted.inc()
        request_id = f"genrec-{uuid.uuid4().hex}"
        completed = False
        try:
            samples = await asyncio.wait_for(
                self.backend.sample(prepared.prompt, rec.settings.n_gen, rec.settings.seed, request_id), remaining)
            completed = True
        except TimeoutError:
            aborted = await self.backend.cancel(request_id)
            if aborted:
                self.metrics.aborts.inc()
                self.metrics.abort_count += 1
            return await run_in_threadpool(
                rec.fallback, prepared, f"latency budget of {budget_ms:g} ms exceeded; generation "
                                        f"{'aborted' if aborted else 'abandoned'}")
        except Exception as e:  # engine errors are answered by the fallback, not a 500
            log.exception("generation failed")
            with contextlib.suppress(Exception):
                await self.backend.cancel(request_id)
            return await run_in_threadpool(rec.fallback, prepared, f"generation failed: {type(e).__name__}: {e}")
        finally:
            admission.finish(decision.ticket, completed)
        return await run_in_threadpool(rec.ground, prepared, samples, None, fusion)


@contextlib.contextmanager
def _short_gil_slices(seconds: float = 0.0005):
    """While a catalog change runs (mostly Python: validation, the batch file, the new id map),
    hand the GIL over every ``seconds`` instead of every 5 ms: a request waiting for it at each of
    its thread hops otherwise queues behind whole slices (the p99 of requests running beside a
    1,000-item change, bench/catalog_update.py)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class _NoGenerator:
    """The server generates through its backend; the recommender only prepares and grounds."""

    def generate(self, prompts: list[str], n: int, seed: int | None = None) -> list[list[Any]]:
        raise GenrecError("the server generates through its async backend")


def create_app(bundle: Bundle | str, backend: str | None = None, generator: Any = None,
               max_body_bytes: int | None = None, admin_token: str | None = None, **gen_overrides: Any) -> FastAPI:
    """The ASGI app over a bundle. The generation engine starts with the app (lifespan).

    ``backend``: ``vllm`` or ``hf`` (default: the bundle's setting); ``generator``: an already
    built blocking generator (then run in a worker thread); ``admin_token``: what catalog
    writes must carry (None: writes refused); ``gen_overrides`` change the bundle's generation
    settings (e.g. ``max_new_tokens``).
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    service = Service(bundle, make_backend(bundle, backend, generator, **gen_overrides), max_body_bytes,
                      admin_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        on_ready = getattr(app.state, "on_ready", None)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await service.backend.close()

    app = FastAPI(title="genrec", summary="Generative recommendations with a fast fallback", lifespan=lifespan)
    app.state.service = service

    @app.post("/recommend")
    async def recommend(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            body = await read_body(request, service.max_body_bytes)
            req = parse_request(body, service.settings.server.budget_ms)
            if req.k is not None and req.k > service.settings.server.max_k:
                raise Problem(422, f"must be at most {service.settings.server.max_k}, got {req.k}", field="k")
            snapshot_rec = service.recommender  # this request's catalog, whatever changes meanwhile
            try:
                prepared = snapshot_rec.prepare(req.history, req.k, req.exclude_history)
                snapshot_rec.check_mode(req.mode)
                snapshot_rec.check_fusion(req.fusion)
            except RequestError as e:
                raise Problem(422, str(e), field=e.field) from None
        except Problem as p:
            service.metrics.observe("error", p.status, time.perf_counter() - t0)
            return _problem_response(p)
        rec = await service.answer(prepared, req.budget_ms, t0, req.mode, req.fusion, snapshot_rec)
        latency = time.perf_counter() - t0
        service.metrics.observe(rec.path, 200, latency, rec.reason)
        return JSONResponse({"items": [it.to_dict() for it in rec.items], "path": rec.path, "mode": rec.mode,
                             "filled": rec.filled, "unknown_ids": rec.unknown_ids, "reason": rec.reason,
                             "latency_ms": round(latency * 1000.0, 3)})

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        from genrec.web_page import PAGE

        return HTMLResponse(PAGE)

    @app.get("/items")
    async def items(q: str = "", limit: str = "20", id: str | None = None) -> JSONResponse:  # noqa: A002
        try:
            n = int(limit)
        except ValueError:
            n = -1
        if not 1 <= n <= MAX_SEARCH_LIMIT:
            return _problem_response(Problem(422, f"must be an integer in [1, {MAX_SEARCH_LIMIT}], got {limit!r}",
                                             field="limit"))
        found, total = search_items(bundle, q, n, id)
        return JSONResponse({"items": found, "total": total})

    # -- the live catalog ------------------------------------------------------------------
    def authorize(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not given:
            raise Problem(401, "catalog changes need the admin token: Authorization: Bearer <token>")
        if service.admin_token is None:
            raise Problem(403, "catalog changes are disabled: the server was started without an admin token "
                               f"(--admin-token-file or {ADMIN_TOKEN_ENV})")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 service.admin_token.encode()):
            raise Problem(403, "wrong admin token")

    async def catalog_write(request: Request, op: str, payload_of) -> JSONResponse:
        try:
            authorize(request)
            body = await read_body(request, service.settings.server.max_catalog_body_bytes)
            summary = await run_in_threadpool(service.change_catalog, op, body, payload_of)
        except Problem as p:
            return _problem_response(p)
        except CatalogChangeError as e:
            out = {"error": str(e)}
            if e.item is not None:
                out["item"] = e.item
            if e.field:
                out["field"] = e.field
            return JSONResponse(out, status_code=e.status)
        return JSONResponse(summary)

    def _items_list(data: Any) -> list:
        if isinstance(data, dict) and set(data) == {"items"}:
            data = data["items"]
        if not isinstance(data, list):
            raise Problem(422, "send a JSON list of items (or {\"items\": [...]})", field="items")
        return data

    @app.post("/items")
    async def add_items(request: Request) -> JSONResponse:
        return await catalog_write(request, "add", _items_list)

    @app.put("/items/{item_id:path}")
    async def update_item(item_id: str, request: Request) -> JSONResponse:
        return await catalog_write(request, "update", lambda data: [(item_id, data)])

    @app.delete("/items/{item_id:path}")
    async def withdraw_item(item_id: str, request: Request) -> JSONResponse:
        return await catalog_write(request, "withdraw", lambda data: [item_id])

    @app.post("/items/{item_id:path}/restore")
    async def restore_item(item_id: str, request: Request) -> JSONResponse:
        return await catalog_write(request, "restore", lambda data: [item_id])

    @app.get("/items/{item_id:path}")
    async def get_item(item_id: str) -> JSONResponse:
        snap = bundle.snapshot
        i = snap.catalog.get_index(item_id)
        if i is None:
            return _problem_response(Problem(404, f"{item_id!r} is not in the catalog", field="item_id"))
        return JSONResponse({**snap.catalog[i].to_dict(), "withdrawn": bool(snap.withdrawn[i]),
                             "popularity": int(snap.popularity[i]), "catalog_version": snap.version})

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({
            "status": "ok" if service.ready else "starting",
            "backend": service.backend.name, "model": bundle.model_path, "num_items": len(bundle.catalog),
            "catalog_version": bundle.snapshot.version, "withdrawn": int(bundle.snapshot.withdrawn.sum()),
            "fallback": bundle.fallback_path,
            "engine": {"unfinished": service.backend.unfinished(), "aborted": service.metrics.abort_count},
            "admission": admission_state(service.admission),
            "answered": service.metrics.answered, "fallback_answers": service.metrics.answered_by_fallback,
        })

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def admission_state(ctl: AdmissionController) -> dict:
    """What /health shows of the admission controller."""
    return {"enabled": ctl.settings.enabled, "admitted": ctl.admitted, "shed": ctl.shed, "in_flight": ctl.in_flight,
            "rate_per_s": None if ctl.rate is None else round(ctl.rate, 4),
            "solo_ms": None if ctl.solo_s is None else round(ctl.solo_s * 1000, 1),
            "predicted_ms": None if ctl.predicted_s() is None else round(ctl.predicted_s() * 1000, 1)}


def read_admin_token(token_file: str | None = None) -> str | None:
    """The admin token: the first line of ``token_file``, else the environment's
    ``GENREC_ADMIN_TOKEN``, else None (catalog writes refused). Never from the command line,
    where ``ps`` shows it."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"{token_file}: cannot read the admin token file: {e.strerror}") from None
        if not token:
            raise ConfigError(f"{token_file}: the admin token file is empty")
        return token
    return os.environ.get(ADMIN_TOKEN_ENV, "").strip() or None


def serve(bundle_dir: str, host: str = "127.0.0.1", port: int = 8000, backend: str | None = None,
          log_level: str = "info", log_dir: str | None = "runs/serve/logs", admin_token_file: str | None = None,
          **gen_overrides: Any) -> None:
    """Load a bundle and serve it with uvicorn until interrupted. Engine and access logs go to
    ``<log_dir>/serve.log`` (the console keeps the address and genrec's warnings); ``log_dir``
    None leaves uvicorn's own console logging. Catalog writes need the token of
    :func:`read_admin_token`."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from genrec import console

    log_file = console.setup(log_dir, "serve") if log_dir else None
    admin_token = read_admin_token(admin_token_file)
    app = create_app(bundle_dir, backend=backend, admin_token=admin_token, **gen_overrides)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.say(f"genrec serve: {bundle_dir} ({app.state.service.backend.name} backend); starting the engine ...")
    if log_file is not None:
        console.say(f"  engine and access logs: {log_file} (--verbose shows them here)")
    app.state.on_ready = lambda: console.say(
        f"  ready: open http://{shown}:{port}/ to try it (JSON API: POST /recommend, GET /items?q=, /health, "
        "/metrics); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level=log_level,
                log_config=None if log_file is not None and not console.is_verbose() else LOGGING_CONFIG)
