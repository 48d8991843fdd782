"""The HTTP server under a bounded mixed load: generative goodput against one client's, and how
fast the requests that cannot be served generatively get their fallback answer.

    python bench/serve_load.py                     # runs/demo/bundle (make demo), 400 requests over 80 s
    python bench/serve_load.py --quick             # 200 requests over 40 s, 4 single-client requests
    python bench/serve_load.py --bundle B --budget-ms 5000 --clients 8

It starts the real server (``inference/serve.py``, the vLLM backend, admission control as the
bundle sets it) on 127.0.0.1 in its own process group, waits for ``/health``, and always stops
it (and the engine processes under it) at the end, whatever happens. The bundle is the demo's
(``genrec demo`` writes ``runs/demo/bundle``); ``--build`` writes a stand-in with the same
settings (demo electronics shop, base SmolLM2, N_gen 10, 32 new tokens) when there is none.

1. **single client** (the reference, same run): valid histories one after another with the
   generous budget; ``single_client_per_s`` = generative answers per second.
2. **mixed load**: ``--clients`` threads share ``--requests`` requests (seeded mix): valid
   histories with the generous budget ``budget_ms``, tight budgets (150-1000 ms), histories with
   unknown ids among known ones, only unknown ids (422), malformed JSON (400), wrong types (422),
   oversized bodies (413), released at a steady rate over ``--duration`` seconds (at most
   ``--clients`` in flight): the valid ones alone offer more than the engine can generate.
   ``generative_goodput_per_s`` = generative answers / the load's wall time; ``goodput_ratio`` =
   that / ``single_client_per_s``.

Latencies are the client's. A 200 answer whose ``reason`` starts with ``shed:`` was not admitted:
``fallback_p99_ms`` is the 99th percentile of those (the answer the server gives at once);
``admitted_p99_ms`` that of every other 200 answer (generated, or aborted at the budget and then
answered by the fallback), to be compared with ``budget_ms``. ``fivexx`` counts 5xx answers and
requests that got no answer at all. The CPU is shared with the clients and other jobs: timings
are noisy. A table, then the last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEMO_BUNDLE = REPO / "runs" / "demo" / "bundle"
MIX = {"valid": 5, "with_unknown": 1, "tight": 3, "unknown_only": 1, "malformed": 2, "wrong_type": 2,
       "oversized": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_stand_in(out: Path) -> Path:
    """The demo bundle's settings (genrec.main_job.MainJobConfig) on the base model, no fallback model."""
    from genrec.bundle import BundleConfig, BundleSettings, write_bundle
    from genrec.data.source import DatasetSource
    from genrec.main_job import MainJobConfig

    job = MainJobConfig()
    settings = BundleSettings()
    settings.recommender.n_gen = job.n_gen
    settings.generation = {"backend": "vllm", "max_new_tokens": job.max_new_tokens, "temperature": 1.0}
    return write_bundle(BundleConfig(out=str(out), dataset=DatasetSource("demo", name=job.target_category),
                                     model=job.model, settings=settings, overwrite=True))


def make_requests(ids: list[str], n: int, budget_ms: float, max_body: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    kinds = [k for k, w in MIX.items() for _ in range(w)]
    order = [kinds[i % len(kinds)] for i in range(n)]
    rng.shuffle(order)
    out = []
    for kind in order:
        hist = rng.sample(ids, rng.randint(2, 6))
        k = rng.randint(3, 10)
        if kind == "valid":
            body: object = {"history": hist, "k": k, "budget_ms": budget_ms}
        elif kind == "with_unknown":
            body = {"history": hist + ["no-such-item"], "k": k, "budget_ms": budget_ms}
        elif kind == "tight":
            body = {"history": hist, "k": k, "budget_ms": rng.choice([150, 300, 600, 1000])}
        elif kind == "unknown_only":
            body = {"history": ["nope-1", "nope-2"], "k": k}
        elif kind == "malformed":
            body = rng.choice([b'{"history": ["a", ', b"not json at all", b'{"history": ["\xff"]}'])
        elif kind == "wrong_type":
            body = rng.choice([{"history": hist[0], "k": k}, {"history": hist, "k": "five"},
                               {"history": hist, "budget_ms": "soon"}, [1, 2, 3]])
        else:  # oversized
            body = ('{"history": ["' + "x" * (max_body + 100) + '"]}').encode()
        out.append({"kind": kind, "body": body})
    return out


def send(client, url: str, req: dict) -> dict:
    body = req["body"]
    t0 = time.perf_counter()
    try:
        if isinstance(body, bytes):
            r = client.post(url + "/recommend", content=body, headers={"content-type": "application/json"})
        else:
            r = client.post(url + "/recommend", json=body)
        ms = (time.perf_counter() - t0) * 1000
        data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        return {"kind": req["kind"], "status": r.status_code, "ms": ms, "path": data.get("path"),
                "reason": data.get("reason")}
    except Exception as e:  # no answer at all counts with the 5xx
        return {"kind": req["kind"], "status": 0, "ms": (time.perf_counter() - t0) * 1000, "path": None,
                "reason": f"{type(e).__name__}: {e}"}


def run_load(url: str, reqs: list[dict], clients: int, duration_s: float, timeout_s: float
             ) -> tuple[list[dict], float]:
    """Request i is released at i x duration / len(reqs) seconds to the first of ``clients``
    threads that is free (a steady offered rate, at most ``clients`` in flight); returns the
    answers and the wall time until the last one came back."""
    import httpx

    results: list[dict] = []
    lock = threading.Lock()
    queue = list(reversed(list(enumerate(reqs))))
    gap = duration_s / max(1, len(reqs))
    t0 = time.perf_counter()

    def worker() -> None:
        with httpx.Client(timeout=timeout_s) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    i, req = queue.pop()
                wait = t0 + i * gap - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                res = send(c, url, req)
                with lock:
                    results.append(res)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - t0


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(values, 99))


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _die_with_parent() -> None:
    """In the server's process (Linux): SIGTERM when this bench process dies, even by SIGKILL,
    so no server outlives the bench."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    """``inference/serve.py`` in its own process group; ``stop`` ends the whole group (and the
    server gets SIGTERM if this process dies without running ``stop``)."""

    def __init__(self, bundle: Path, port: int, log_dir: Path, extra: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        self.log = log_dir / "server.out"
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "inference" / "serve.py"), f"bundle={bundle}", f"port={port}",
                 "host=127.0.0.1", "log_level=warning", f"log_dir={log_dir}", *extra],
                stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent)

    def wait_healthy(self, timeout: float) -> dict:
        import httpx

        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; its output:\n"
                                 f"{self.log.read_text()[-3000:]}")
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                if r.status_code == 200 and r.json()["status"] == "ok":
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"server not healthy after {timeout:.0f} s; its output:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # whatever is left of the group (engine processes)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bundle", default=str(DEMO_BUNDLE), help="bundle directory (default: make demo's)")
    ap.add_argument("--build", action="store_true", help="write a stand-in demo bundle when --bundle is missing")
    ap.add_argument("--requests", type=int, default=0, help="mixed-load requests (default 400, quick 200)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=0, help="seconds over which the load's requests are "
                                                             "released (default 80, quick 40)")
    ap.add_argument("--single", type=int, default=0, help="single-client requests (default 8, quick 4)")
    ap.add_argument("--budget-ms", type=float, default=0, help="budget of the valid requests (default: the "
                                                              "bundle's server.budget_ms)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start-timeout", type=float, default=600)
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value settings for inference/serve.py")
    args = ap.parse_args()
    n_req = args.requests or (200 if args.quick else 400)
    n_single = args.single or (4 if args.quick else 8)
    duration = args.duration or (40.0 if args.quick else 80.0)
    started = time.perf_counter()

    bundle_dir = Path(args.bundle)
    if not (bundle_dir / "settings.yaml").exists():
        if not args.build:
            raise SystemExit(f"no bundle at {bundle_dir}: run `make demo` (it writes runs/demo/bundle), pass "
                             "--bundle, or --build to write a stand-in there")
        print(f"writing a stand-in demo bundle to {bundle_dir} ...", flush=True)
        build_stand_in(bundle_dir)
    import httpx

    from genrec.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    budget_ms = args.budget_ms or bundle.settings.server.budget_ms
    ids = [it.item_id for it in bundle.catalog]
    reqs = make_requests(ids, n_req, budget_ms, bundle.settings.server.max_body_bytes, args.seed)
    rng = random.Random(args.seed + 1)
    singles = [{"kind": "valid", "body": {"history": rng.sample(ids, rng.randint(2, 6)), "k": 10,
                                          "budget_ms": budget_ms}} for _ in range(n_single)]

    log_dir = Path(tempfile.mkdtemp(prefix="genrec-serve-load-"))
    server = Server(bundle_dir, free_port(), log_dir, args.set)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the server
    try:
        t0 = time.perf_counter()
        health = server.wait_healthy(args.start_timeout)
        start_s = time.perf_counter() - t0
        url = server.url
        with httpx.Client(timeout=budget_ms / 1000 + 60) as c:
            t0 = time.perf_counter()
            single = [send(c, url, r) for r in singles]
            single_s = time.perf_counter() - t0
        single_gen = sum(r["path"] == "generative" for r in single)
        single_per_s = single_gen / single_s
        results, load_s = run_load(url, reqs, args.clients, duration, budget_ms / 1000 + 60)
        metrics_text = httpx.get(url + "/metrics", timeout=10).text
        health_after = httpx.get(url + "/health", timeout=10).json()
    finally:
        server.stop()

    ok = [r for r in results if r["status"] == 200]
    shed = [r for r in ok if (r["reason"] or "").startswith("shed:")]
    admitted = [r for r in ok if not (r["reason"] or "").startswith("shed:")]
    generative = [r for r in ok if r["path"] == "generative"]
    aborted = [r for r in admitted if r["path"] != "generative" and "budget" in (r["reason"] or "")]
    fivexx = sum(r["status"] >= 500 or r["status"] == 0 for r in results)
    goodput = len(generative) / load_s
    ratio = goodput / single_per_s if single_per_s else 0.0

    print(f"bundle {bundle_dir} ({len(ids)} items, N_gen {bundle.settings.recommender.n_gen}); server up in "
          f"{start_s:.0f} s; admission seeded at {health['admission']['solo_ms']} ms alone")
    print(f"single client: {single_gen}/{n_single} generative in {single_s:.1f} s -> {single_per_s:.3f}/s")
    print(f"mixed load: {n_req} requests, {args.clients} clients, {load_s:.1f} s, budget {budget_ms:g} ms")
    print(f"{'kind':<14} {'n':>4} {'statuses':<22} {'generative':>10} {'shed':>5} {'p50 ms':>8} {'p99 ms':>8}")
    import numpy as np

    for kind in MIX:
        rs = [r for r in results if r["kind"] == kind]
        if not rs:
            continue
        statuses = {}
        for r in rs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        ms = [r["ms"] for r in rs]
        print(f"{kind:<14} {len(rs):>4} {json.dumps(statuses):<22} {sum(r['path'] == 'generative' for r in rs):>10} "
              f"{sum((r['reason'] or '').startswith('shed:') for r in rs):>5} {np.percentile(ms, 50):>8.0f} "
              f"{np.percentile(ms, 99):>8.0f}")
    print(f"server /metrics: admitted {metric(metrics_text, 'genrec_admitted_total'):.0f}, shed "
          f"{metric(metrics_text, 'genrec_shed_total'):.0f}, aborted {metric(metrics_text, 'genrec_engine_aborts_total'):.0f};"
          f" engine unfinished after the load {health_after['engine']['unfinished']}")
    print(f"goodput {goodput:.3f} generative answers/s vs single client {single_per_s:.3f}/s -> ratio {ratio:.2f} "
          f"(target >= 0.8); whole run {time.perf_counter() - started:.0f} s")
    fb, ad = p99([r["ms"] for r in shed]), p99([r["ms"] for r in admitted])
    print(json.dumps({
        "fivexx": fivexx, "generative_answers": len(generative), "generative_goodput_per_s": round(goodput, 4),
        "single_client_per_s": round(single_per_s, 4), "goodput_ratio": round(ratio, 3),
        "fallback_p99_ms": None if fb is None else round(fb, 1), "admitted_p99_ms": None if ad is None else round(ad, 1),
        "admitted_max_ms": round(max(r["ms"] for r in admitted), 1) if admitted else None,
        "budget_ms": budget_ms, "requests": n_req, "clients": args.clients, "answered_200": len(ok),
        "admitted": len(admitted), "shed": len(shed), "aborted": len(aborted),
        "metrics_admitted": metric(metrics_text, "genrec_admitted_total"),
        "metrics_shed": metric(metrics_text, "genrec_shed_total"),
        "metrics_aborted": metric(metrics_text, "genrec_engine_aborts_total"),
        "load_s": round(load_s, 1), "server_start_s": round(start_s, 1),
        "solo_ms_at_start": health["admission"]["solo_ms"], "bundle": str(bundle_dir),
        "total_s": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
