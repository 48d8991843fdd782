"""Live catalog changes under load: how long until added items are recommended, and what the change
costs the requests running meanwhile.

    python bench/catalog_update.py            # the Scientific bundle + a synthetic 1M-item bundle
    python bench/catalog_update.py --quick    # under a minute: Scientific + a synthetic 100k-item bundle

For each catalog it writes a bundle (Scientific: ``genrec bundle`` over the shared lcrec data;
synthetic: the Scientific vocabulary drawn with its word frequencies and item lengths, written
directly as a bundle's files, since bm25s and the tokenizer would take minutes at 1M), starts the
real server on 127.0.0.1 in a child process with an admin token, and runs a steady open-loop load
of ``/recommend`` requests (``--rate`` per second over ``--clients`` threads). Generation is a
stand-in that writes the title of the history's last item (the LLM is not what is measured: QRR
grounding over the whole catalog, the ranking and the fallback are), so every answer goes through
the catalog structures a change replaces.

Then, under that load: ``POST /items`` with 1 item, and later with 1,000 items, each a new id with
the title of an existing item. ``answer_s`` is the time from sending the request to its answer;
``visible_s`` the time from sending it to the first ``/recommend`` (a probe whose history is the
existing item whose title the last new item copies) that returns the new item. ``p99`` is over the
load's requests that started before the first change (after ``--warm`` seconds not counted: imports,
compiled kernels) (``before``), and those that started between sending the 1,000-item change and
2 s after it became visible (``during``: the change itself and the first requests on the new
catalog, so that the window holds requests even when the change takes a fraction of a second). ``fivexx``: 5xx answers and requests
that got no answer, over the whole run. A table, then the last line: one JSON object.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCIENTIFIC = REPO.parent / "shared" / "data" / "amazon18_industrial_scientific_lcrec"
TOKEN = "bench-admin-token"
PROBE_EVERY_S = 0.25  # visibility probes while a change is applied (each is a recommend request)
AFTER_S = 2.0  # the "during" window runs this long past visibility: the first requests on the new catalog


class TitleEcho:
    """Stands in for the LLM in the server: each sample is the title of the prompt's last item."""

    def generate(self, prompts, n=None, seed=None):
        from genrec.generation.base import Sample

        out = []
        for p in prompts:
            lines = [x for x in p.splitlines() if "Title:" in x]
            title = lines[-1].split("Title:", 1)[1].split("|")[0].strip() if lines else ""
            out.append([Sample(f"Title: {title}", -1.0)] * (n or 1))
        return out


def serve_child(bundle: str, port: int) -> None:
    """The child process: the real app over ``bundle`` with the stand-in generator."""
    import uvicorn

    from genrec.server import create_app, read_admin_token

    app = create_app(bundle, generator=TitleEcho(), admin_token=read_admin_token())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- bundles ---------------------------------------------------------------------------------------
def scientific_bundle(out: Path) -> Path:
    from genrec.bundle import BundleConfig, BundleSettings, write_bundle
    from genrec.data.source import DatasetSource
    from genrec.recommender import RecommenderSettings

    settings = BundleSettings(recommender=RecommenderSettings(n_gen=4, n_preds=4, k=10),
                              generation={"backend": "hf", "max_new_tokens": 8})
    return write_bundle(BundleConfig(out=str(out), dataset=DatasetSource("lcrec", str(SCIENTIFIC)),
                                     model="smollm2-135m", copy_model=False, settings=settings))


def synthetic_bundle(out: Path, size: int, rng: np.random.Generator) -> Path:
    """A bundle of ``size`` title-only items whose words follow the Scientific catalog's."""
    import scipy.sparse as sp
    import yaml

    from genrec.bundle import (
        BUNDLE_FORMAT,
        BUNDLE_VERSION,
        CATALOG,
        INDEX_DIR,
        MANIFEST,
        POPULARITY,
        SETTINGS,
        TEMPLATE,
        BundleSettings,
    )
    from genrec.config import to_dict
    from genrec.data.catalog import Catalog, Item
    from genrec.data.readers import read_dataset
    from genrec.grounding import BM25Index, tokenize
    from genrec.model_store import resolve_model
    from genrec.prompting import PromptTemplate
    from genrec.recommender import RecommenderSettings

    template = PromptTemplate.load("calrec")
    sci = read_dataset("lcrec", SCIENTIFIC).catalog
    docs = [tokenize(it.title) for it in sci]
    words = sorted({w for d in docs for w in d})
    vocab = {w: i for i, w in enumerate(words)}
    freq = np.bincount([vocab[w] for d in docs for w in d], minlength=len(words)).astype(np.float64)
    cdf = np.cumsum(freq / freq.sum())
    lengths = np.array([max(1, len(d)) for d in docs])
    lens = rng.choice(lengths, size)
    ids = np.minimum(np.searchsorted(cdf, rng.random(int(lens.sum()))), len(words) - 1)
    bounds = np.concatenate([[0], np.cumsum(lens)])
    items = [Item(f"syn-{i:07d}", " ".join(words[j] for j in ids[bounds[i]:bounds[i + 1]])) for i in range(size)]
    catalog = Catalog(items)
    title_term = len(vocab)  # every rendered text starts with "Title:" (the template's word)
    vocab = {**vocab, "title": title_term}
    rows = np.concatenate([np.repeat(np.arange(size), lens), np.arange(size)])
    cols = np.concatenate([ids, np.full(size, title_term)])
    counts = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(size, len(vocab)))
    assert tokenize(template.render_target_item(items[0])) == ["title", *tokenize(items[0].title)]

    tmp = Path(tempfile.mkdtemp(prefix=".syn-", dir=out.parent))
    catalog.save(tmp / CATALOG)
    (tmp / TEMPLATE).write_text(template.source_text, encoding="utf-8")
    pop = rng.zipf(1.5, size).clip(max=10_000)
    (tmp / POPULARITY).write_text(json.dumps({"counts": pop.tolist()}), encoding="utf-8")
    BM25Index.from_counts(counts, vocab).save(tmp / INDEX_DIR)
    settings = BundleSettings(recommender=RecommenderSettings(template=TEMPLATE, n_gen=4, n_preds=4, k=10),
                              generation={"backend": "hf", "max_new_tokens": 8})
    (tmp / SETTINGS).write_text(yaml.safe_dump(to_dict(settings), sort_keys=False), encoding="utf-8")
    manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "num_items": size,
                "catalog_fingerprint": catalog.fingerprint(), "template": template.name,
                "model": {"dir": None, "spec": resolve_model("smollm2-135m"), "adapter": None, "merged_from": None},
                "fallback": None, "trie": None, "source": {"synthetic": size}}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, out)
    return out


# -- the load ----------------------------------------------------------------------------------------
class Load:
    """An open-loop load: requests released at ``rate`` per second over ``clients`` threads."""

    def __init__(self, url: str, ids: list[str], rate: float, clients: int, seed: int = 0) -> None:
        self.url, self.ids, self.rate, self.clients = url, ids, rate, clients
        self.rng = random.Random(seed)
        self.records: list[tuple[float, float, int]] = []  # (start, seconds, status; 0 = no answer)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.next_t = time.perf_counter()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _ticket(self) -> float:
        with self.lock:
            t = self.next_t
            self.next_t += 1.0 / self.rate
            return t

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=60) as c:
            while not self.stop.is_set():
                t = self._ticket()
                delay = t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                with self.lock:
                    history = self.rng.sample(self.ids, 3)
                start = time.perf_counter()
                try:
                    status = c.post(self.url + "/recommend", json={"history": history, "k": 10}).status_code
                except Exception:
                    status = 0
                with self.lock:
                    self.records.append((start, time.perf_counter() - start, status))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)

    def p99_ms(self, t0: float, t1: float) -> tuple[float, int]:
        lat = [s for start, s, st in self.records if t0 <= start < t1 and st == 200]
        return (float(np.percentile(lat, 99) * 1000) if lat else float("nan")), len(lat)

    def slowest(self, t0: float, t1: float, n: int = 3) -> list[tuple[float, float]]:
        """(start offset from t0 in s, latency in ms) of the ``n`` slowest requests started in [t0, t1)."""
        rows = sorted(((s, start - t0) for start, s, st in self.records if t0 <= start < t1), reverse=True)[:n]
        return [(round(off, 2), round(sec * 1000, 1)) for sec, off in rows]

    def fivexx(self) -> int:
        return sum(1 for _, _, st in self.records if st == 0 or st >= 500)


def timed_change(url: str, batch: list[dict], probe_history: list[str], probe_id: str) -> dict:
    """POST the batch; meanwhile probe /recommend until it returns ``probe_id``."""
    import httpx

    out: dict = {}
    t0 = time.perf_counter()

    def post() -> None:
        r = httpx.post(url + "/items", json=batch, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300)
        out["answer_s"] = time.perf_counter() - t0
        out["status"] = r.status_code

    poster = threading.Thread(target=post)
    poster.start()
    with httpx.Client(timeout=60) as c:
        while time.perf_counter() - t0 < 300:
            answered = "answer_s" in out
            r = c.post(url + "/recommend", json={"history": probe_history, "k": 10})
            if r.status_code == 200 and probe_id in [it["item_id"] for it in r.json()["items"]]:
                out["visible_s"] = time.perf_counter() - t0  # when the probe's answer arrived
                break
            # a few probes a second (they are load too), and one as soon as the change is answered
            for _ in range(int(PROBE_EVERY_S * 100)):
                if "answer_s" in out and not answered:
                    break
                time.sleep(0.01)
    poster.join(300)
    out["t0"] = t0
    out["t_visible"] = t0 + out.get("visible_s", float("nan"))
    return out


def run_catalog(label: str, bundle: Path, args, tmp: Path) -> dict:
    from genrec.data.catalog import Catalog

    catalog = Catalog.load(bundle / "catalog.jsonl")
    ids = [it.item_id for it in catalog]
    port = free_port()
    log = tmp / f"server-{label}.log"
    env = dict(os.environ, GENREC_ADMIN_TOKEN=TOKEN, PYTHONPATH=str(REPO))
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(bundle), "--port", str(port)],
                                stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        t_start = time.time()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).json().get("status") == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.time() - t_start > 900:
                raise SystemExit("server not healthy after 900 s")
            time.sleep(0.5)
        startup = time.time() - t_start
        rng = random.Random(1)
        load = Load(url, ids, args.rate, args.clients)
        load.start()
        time.sleep(args.warm)  # first requests: imports, compiled kernels, caches
        t_warm = time.perf_counter()
        time.sleep(args.seconds)
        t_first = time.perf_counter()
        results = {}
        for n in (1, 1000):
            src = rng.sample(range(len(catalog)), n)
            batch = [{"item_id": f"new-{label}-{n}-{j}", "title": catalog[i].title} for j, i in enumerate(src)]
            results[n] = timed_change(url, batch, [ids[src[-1]]], batch[-1]["item_id"])
            time.sleep(AFTER_S + 0.2 if n == 1000 else max(1.0, args.seconds / 3))  # the "during" window
        load.finish()
        p99_before, n_before = load.p99_ms(t_warm, t_first)
        change = results[1000]
        t_end = max(change["t_visible"], change["t0"] + change["answer_s"]) + AFTER_S
        p99_during, n_during = load.p99_ms(change["t0"], t_end)
        slowest = load.slowest(change["t0"], t_end)
        return {"label": label, "items": len(catalog), "startup_s": startup, "changes": results,
                "p99_before": p99_before, "n_before": n_before, "p99_during": p99_during, "n_during": n_during,
                "slowest_during": slowest, "slowest_before": load.slowest(t_warm, t_first),
                "fivexx": load.fivexx(), "requests": len(load.records)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="under a minute: a synthetic 100k-item catalog")
    ap.add_argument("--size", type=int, default=0, help="synthetic catalog size (default 1,000,000; quick 100,000)")
    ap.add_argument("--rate", type=float, default=8.0, help="recommend requests per second of the load")
    ap.add_argument("--clients", type=int, default=4, help="load threads")
    ap.add_argument("--seconds", type=float, default=0, help="load before the first change (default 20; quick 3)")
    ap.add_argument("--warm", type=float, default=0, help="load not counted, before that (default 5; quick 1.5)")
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_child(args.serve, args.port)
        return
    size = args.size or (100_000 if args.quick else 1_000_000)
    args.seconds = args.seconds or (3.0 if args.quick else 20.0)
    args.warm = args.warm or (1.5 if args.quick else 5.0)
    big = f"{size // 1_000_000}m" if size >= 1_000_000 and size % 1_000_000 == 0 else f"{size // 1000}k"
    rows = []
    with tempfile.TemporaryDirectory(prefix="catalog-update-") as d:
        tmp = Path(d)
        t = time.perf_counter()
        sci = scientific_bundle(tmp / "scientific")
        print(f"Scientific bundle written in {time.perf_counter() - t:.1f} s", flush=True)
        rows.append(run_catalog("scientific", sci, args, tmp))
        t = time.perf_counter()
        syn = synthetic_bundle(tmp / "synthetic", size, np.random.default_rng(0))
        print(f"synthetic {size:,}-item bundle written in {time.perf_counter() - t:.1f} s", flush=True)
        rows.append(run_catalog(big, syn, args, tmp))

    print(f"\nLive catalog changes under a steady load of {args.rate:g} recommend/s ({args.clients} clients); "
          "shared 2-core CPU: timings are noisy")
    print(f"{'catalog':<12} {'items':>10} {'added':>6} {'status':>6} {'answer s':>9} {'visible s':>10} "
          f"{'p99 before ms':>14} {'p99 during ms':>14} {'5xx':>4}")
    for r in rows:
        for n, c in r["changes"].items():
            during = f"{r['p99_during']:.1f} (n={r['n_during']})" if n == 1000 else ""
            print(f"{r['label']:<12} {r['items']:>10,} {n:>6} {c.get('status', '-'):>6} {c.get('answer_s', float('nan')):>9.2f} "
                  f"{c.get('visible_s', float('nan')):>10.2f} {r['p99_before']:>14.1f} {during:>14} {r['fivexx']:>4}")
    for r in rows:
        print(f"{r['label']}: slowest requests (start offset s, ms) before the changes {r['slowest_before']}; "
              f"from the 1,000-item change on {r['slowest_during']}")
    b = rows[-1]
    out = {f"visible_s_1000_items_{big}": round(b["changes"][1000].get("visible_s", float("nan")), 2),
           f"visible_s_1_item_{big}": round(b["changes"][1].get("visible_s", float("nan")), 2),
           f"answer_s_1000_items_{big}": round(b["changes"][1000].get("answer_s", float("nan")), 2),
           "visible_s_1000_items_scientific": round(rows[0]["changes"][1000].get("visible_s", float("nan")), 2),
           "visible_s_1_item_scientific": round(rows[0]["changes"][1].get("visible_s", float("nan")), 2),
           "fivexx": sum(r["fivexx"] for r in rows),
           "p99_ms_before": round(b["p99_before"], 1), "p99_ms_during_update": round(b["p99_during"], 1),
           "requests": sum(r["requests"] for r in rows), "synthetic_items": size, "rate_per_s": args.rate}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
