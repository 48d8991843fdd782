"""A live catalog: add, update, withdraw and restore items of a bundle without rebuilding it.

Why: a shop's catalog changes daily. The text paths can take a new item at once (BM25 grounding,
the prefix tree, item-text vectors), so a change here updates every structure that depends on the
catalog and is visible to the next request; nothing is retrained.

**Identity.** Items keep their catalog index for life: new items are appended (indices N, N+1, ...),
an update replaces an item's text in place, a withdrawal only sets a mask. A withdrawn item is never
recommended by any path or mode (masked from fallback scores, BM25 grounding, the prefix tree, the
embedding mode and popularity) but stays valid in histories; ``restore`` lifts the mask. An id is
never reused: adding an id that is withdrawn is refused (restore it, then update it).

**On disk** (``<bundle>/live/``): the bundle's own files are never rewritten. Each accepted batch is
one JSON-lines file (``000001.jsonl``, ...) written aside and fsynced, then ``state.json`` (the list
of batches in force) is replaced by one ``os.replace``. A process killed at any point leaves the old
or the new ``state.json``, so a reload replays all of a batch or none of it; a batch file no state
names is ignored (and overwritten by the next batch of that number). Loading replays the batches
over the base catalog; everything derived (BM25 weights, tree, vectors) is rebuilt from the texts.

**In memory** (copy-on-write): a :class:`CatalogSnapshot` is immutable once published. A change
builds the next snapshot aside (sharing the base structures) and replaces one reference, so a
request that took the old snapshot finishes on it, and every request that starts after the change's
answer sees the new one. Derived parts (BM25 index, fallback, prefix tree, embedding) are built on
first use, or before the swap when the previous snapshot had them loaded (a served catalog never
pays the build on a request).

**BM25, incrementally.** Rebuilding the index of a 1M-item catalog means re-tokenising every text
(tens of seconds here), so the base weights are kept and the changed items (added, or re-texted)
are weighted with the base index's statistics frozen: its idf per term (from each term's document
count, the rows of the weight matrix) and its mean item length. A word the base never saw gets the
idf it would have with the base's N and its count among the changed items. The changed items'
weights form a side matrix and the base postings of updated and withdrawn items are masked; QRR's
kernel reads base and side together (:class:`OverlayBM25Index`), so a change costs O(changed
items). Merging the two into one matrix instead (one sparse sum) took 0.3-0.6 s per change at 1M
items on this 2-core machine and doubled the recommend p99 of the requests running meanwhile
(bench/catalog_update.py). Frozen statistics drift from a fresh index as changes accumulate;
folding the changes into a new base (a compaction) is not built yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import ChainMap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec.data.catalog import Catalog, Item
from genrec.errors import GenrecError
from genrec.esr.scorer import PopularityScorer
from genrec.grounding import BM25Index, tokenize

log = logging.getLogger(__name__)

LIVE_DIR = "live"
STATE = "state.json"
LOCK = ".lock"
STATE_FORMAT = "genrec-live-catalog"
ITEM_FIELDS = ("item_id", "title", "brand", "categories", "price", "description", "extra")
OPS = ("add", "update", "withdraw", "restore")
MAX_ID_CHARS = 256
# Test hook: seconds to sleep after a batch file is written and before state.json switches to it
# (the kill test stops the process there).
PAUSE_ENV = "GENREC_LIVE_CATALOG_PAUSE_S"


class CatalogChangeError(GenrecError):
    """A rejected change: ``status`` (an HTTP 4xx), the ``item`` (id or batch position) and ``field``
    it is about. Nothing of a batch with one such error is applied."""

    def __init__(self, message: str, status: int = 422, item: str | None = None, field: str | None = None) -> None:
        self.status, self.item, self.field, self.detail = status, item, field, message
        where = " ".join(x for x in (f"item {item}" if item is not None else "",
                                     f"field '{field}'" if field else "") if x)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Change:
    """One accepted change: ``item`` is the item's whole new record (add, update), else None."""

    op: str
    item_id: str
    item: Item | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"op": self.op, "item_id": self.item_id}
        if self.item is not None:  # Item.to_dict's fields, without dataclasses.asdict's deep copy (8x slower)
            it = self.item
            out["item"] = {"item_id": it.item_id, "title": it.title, "brand": it.brand,
                           "categories": list(it.categories), "price": it.price, "description": it.description,
                           "extra": dict(it.extra)}
        return out

    @classmethod
    def from_json(cls, row: dict) -> Change:
        return cls(row["op"], row["item_id"], Item.from_dict(row["item"]) if row.get("item") else None)


# -- validation ------------------------------------------------------------------------------
def _optional_text(value: Any, item: str, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CatalogChangeError(f"must be a string, got {type(value).__name__}", item=item, field=name)
    return str(value).strip() or None


def parse_item(row: Any, item: str, item_id: str | None = None, fields_of: Item | None = None) -> Item:
    """An item record from JSON: ``item_id`` fixed by the caller when given (an update), the other
    fields over ``fields_of`` (an update changes only what it names). ``item`` names it in errors."""
    if not isinstance(row, dict):
        raise CatalogChangeError(f"must be a JSON object of item fields ({', '.join(ITEM_FIELDS)}), "
                                 f"got {type(row).__name__}", item=item)
    unknown = sorted(set(row) - set(ITEM_FIELDS))
    if unknown:
        raise CatalogChangeError(f"unknown field; known: {', '.join(ITEM_FIELDS)}", item=item, field=unknown[0])
    if item_id is None:
        raw = row.get("item_id")
        if not isinstance(raw, str) or not raw.strip():
            raise CatalogChangeError(f"must be a non-empty string, got {raw!r}", item=item, field="item_id")
        item_id = raw
    elif "item_id" in row and row["item_id"] != item_id:
        raise CatalogChangeError(f"is {row['item_id']!r} but the request is about {item_id!r}; ids cannot change",
                                 item=item, field="item_id")
    if len(item_id) > MAX_ID_CHARS or item_id != item_id.strip():
        raise CatalogChangeError(f"must be at most {MAX_ID_CHARS} characters without surrounding spaces",
                                 item=item, field="item_id")
    merged = fields_of.to_dict() if fields_of is not None else {}
    merged.update({k: v for k, v in row.items() if k != "item_id"})
    title = merged.get("title")
    if not isinstance(title, str):
        raise CatalogChangeError(f"must be a string, got {type(title).__name__}", item=item, field="title")
    if not tokenize(title, stopwords=False):
        raise CatalogChangeError(f"has no word ({title!r}); an item needs a text to be found by", item=item,
                                 field="title")
    cats = merged.get("categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise CatalogChangeError("must be a list of strings", item=item, field="categories")
    extra = merged.get("extra") or {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise CatalogChangeError("must be an object of string values", item=item, field="extra")
    return Item(item_id=item_id, title=title.strip(), brand=_optional_text(merged.get("brand"), item, "brand"),
                categories=tuple(c.strip() for c in cats if c.strip()),
                price=_optional_text(merged.get("price"), item, "price"),
                description=_optional_text(merged.get("description"), item, "description"),
                extra=tuple(sorted(extra.items())))


def _check_batch(rows: Any, max_batch: int | None, what: str = "items") -> list:
    if not isinstance(rows, list):
        raise CatalogChangeError(f"{what}: must be a JSON list, got {type(rows).__name__}")
    if not rows:
        raise CatalogChangeError(f"{what}: the batch is empty")
    if max_batch is not None and len(rows) > max_batch:
        raise CatalogChangeError(f"{what}: {len(rows)} in one batch, the limit is {max_batch}", status=413)
    return rows


# -- derived structures ------------------------------------------------------------------------
def _idf(n: int, df: np.ndarray) -> np.ndarray:
    return np.maximum(np.log((n - df + 0.5) / (df + 0.5)), 0.0)


def overlay_bm25(base: BM25Index, texts: dict[int, str], hidden: np.ndarray, n_total: int,
                 pace: Callable[[], None] = lambda: None) -> BM25Index:
    """The base index with the columns of ``hidden`` (base indices) zeroed and the ``texts`` of
    changed items (catalog index → text) weighted with the base's frozen statistics (module
    docstring); ``n_total`` items in all."""
    if base.avgdl is None:
        raise GenrecError("the bundle's BM25 index has no mean item length (written before live catalogs); "
                          "write the bundle again")
    w = base.weights
    n_base = w.shape[1]
    vocab = base.vocab
    new_terms: dict[str, int] = {}
    rows, cols, tfs, lens = [], [], [], []
    for idx, text in texts.items():
        pace()
        words = tokenize(text, base.stopwords)
        counts: dict[int, int] = {}
        for word in words:
            t = vocab.get(word)
            if t is None:
                t = new_terms.setdefault(word, len(vocab) + len(new_terms))
            counts[t] = counts.get(t, 0) + 1
        for t, c in counts.items():
            rows.append(t)
            cols.append(idx)
            tfs.append(c)
            lens.append(len(words))
    n_vocab = len(vocab) + len(new_terms)
    df_base = np.diff(w.indptr)
    idf = np.zeros(n_vocab)
    idf[:len(vocab)] = np.where(df_base > 0, _idf(n_base, df_base), 0.0)  # an empty row: idf 0 (floored)
    if new_terms:
        new_rows = np.asarray(rows, dtype=np.int64)
        new_rows = new_rows[new_rows >= len(vocab)]
        df_new = np.bincount(new_rows - len(vocab), minlength=len(new_terms))
        idf[len(vocab):] = _idf(n_base, df_new)
    r, c = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    tf, ln = np.asarray(tfs, dtype=np.float64), np.asarray(lens, dtype=np.float64)
    k1, b = base.k1, base.b
    data = idf[r] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * ln / base.avgdl))
    side = sp.csr_matrix((data.astype(np.float32), (r, c)), shape=(n_vocab, n_total))
    side.eliminate_zeros()  # terms of idf 0: QRR's kernel counts on positive weights
    mask = None
    if hidden.size:
        mask = np.zeros(n_total, dtype=bool)
        mask[hidden] = True
    out_vocab = vocab if not new_terms else {**vocab, **new_terms}
    return OverlayBM25Index(w, out_vocab, k1, b, base.stopwords, base.avgdl, side=side, hidden=mask, total=n_total)


@dataclass
class OverlayBM25Index(BM25Index):
    """The base BM25 weights (shared, never copied) plus a ``side`` matrix of the changed items'
    weights [vocabulary, items] and a ``hidden`` mask of base items whose base postings no longer
    count. QRR grounding scores it without merging the two (genrec.grounding.qrr_batch), so a
    change costs O(changed items), not O(catalog)."""

    side: sp.csr_matrix | None = None
    hidden: np.ndarray | None = None
    total: int = 0

    @property
    def num_items(self) -> int:
        return self.total

    def score_matrix(self, queries: Sequence[str]) -> sp.csr_matrix:
        q = self.query_matrix(queries)
        base = (q[:, :self.weights.shape[0]] @ self.weights).tocsr()
        base = sp.csr_matrix((base.data, base.indices, base.indptr), shape=(len(queries), self.total))
        if self.hidden is not None:
            base.data[self.hidden[base.indices]] = 0
            base.eliminate_zeros()
        return (base + q @ self.side).tocsr()


def trie_paths(trie) -> list[np.ndarray]:
    """The token path of every item of a prefix tree (index = the tree's item id), read back from
    its arrays: each node's parent is the node whose child range holds it."""
    n_nodes = trie.num_nodes
    parent = np.searchsorted(trie.first_child[:n_nodes], np.arange(n_nodes), side="right") - 1
    parent[0] = 0
    end = np.empty(trie.num_items, dtype=np.int64)
    end[trie.items] = np.repeat(np.arange(n_nodes), np.diff(trie.item_ptr))
    steps = np.full((trie.num_items, trie.depth), -1, dtype=np.int64)
    cur = end.copy()
    length = np.zeros(trie.num_items, dtype=np.int64)
    for d in range(trie.depth):
        live = cur > 0
        if not live.any():
            break
        steps[live, d] = trie.token[cur[live]]
        length += live
        cur = np.where(live, parent[cur], 0)
    return [steps[i, :length[i]][::-1] for i in range(trie.num_items)]


def overlay_trie(base, changed_tokens: dict[int, Sequence[int]], active: np.ndarray, meta: dict):
    """The prefix tree of the active items (``active`` mask over the whole catalog): base paths for
    unchanged base items, ``changed_tokens`` for added and re-texted ones."""
    from genrec.decoding.trie import ItemTrie

    paths = trie_paths(base)
    keep = np.flatnonzero(active)
    seqs = [changed_tokens[i] if i in changed_tokens else paths[i] for i in keep.tolist()]
    trie = ItemTrie.build(seqs, meta)
    trie.items = keep[trie.items].astype(np.int32)
    return trie


# -- scorers over a changed catalog ----------------------------------------------------------------
class MaskedPopularity(PopularityScorer):
    """Popularity counts as a ranking (:class:`~genrec.esr.scorer.PopularityScorer`'s) with withdrawn
    items never returned. ``order``: every item best first (count, then lower index), withdrawn ones
    left out."""

    def __init__(self, counts: np.ndarray, order: np.ndarray) -> None:  # no sort: ``order`` is given
        self.counts = np.asarray(counts, dtype=np.int64)
        self.num_items = len(self.counts)
        self._order = order

    @classmethod
    def over(cls, base: PopularityScorer, counts: np.ndarray, blocked: np.ndarray) -> MaskedPopularity:
        """``base``'s ranking with the items added since appended at count 0 (they follow every base
        item: the lowest count, the highest indices), less the ``blocked``: O(N), where sorting
        ``counts`` again took 0.08 s at 1M."""
        order = np.concatenate([base._order, np.arange(base.num_items, len(counts))])
        return cls(counts, order[~blocked[order]])


class LiveFallbackScorer:
    """A trained fallback over a changed catalog: the base model's faiss index for the items it was
    trained on (withdrawn and re-texted rows masked by an id selector at query time), and a small
    exact table of the changed items' rows (genrec.esr.cold_items). Histories are read by the base
    model: items it never saw are left out of them (it has no state for them)."""

    def __init__(self, base, n_total: int, blocked: np.ndarray, side_idx: np.ndarray, side_rows: np.ndarray) -> None:
        import faiss

        self.base = base
        self.num_items = base.num_items
        self.n_total = n_total
        self.blocked = blocked
        self.side_idx = np.asarray(side_idx, dtype=np.int64)
        self.side_rows = np.ascontiguousarray(side_rows, dtype=np.float32).reshape(
            len(self.side_idx), base._table.shape[1])
        hide = blocked[:base.num_items].copy()
        hide[self.side_idx[self.side_idx < base.num_items]] = True
        self.hidden_base = int(hide.sum())
        self._params = None
        if self.hidden_base:
            self._bits = np.packbits(~hide, bitorder="little")  # kept alive: faiss reads it
            self._sel = faiss.IDSelectorBitmap(base.num_items, faiss.swig_ptr(self._bits))
            self._params = faiss.SearchParameters(sel=self._sel)
        self.side_blocked = blocked[self.side_idx]

    def user_vectors(self, histories):
        return self.base.user_vectors(histories)

    def score_batch(self, histories) -> np.ndarray:
        users = self.base.user_vectors(histories)
        out = np.empty((len(histories), self.n_total), dtype=np.float32)
        out[:, :self.base.num_items] = users @ self.base._table.numpy().T
        if self.n_total > self.base.num_items:
            out[:, self.base.num_items:] = 0.0
        if self.side_idx.size:
            out[:, self.side_idx] = users @ self.side_rows.T
        return out

    def recommend(self, history: list[int], k: int, exclude_history: bool = True) -> list[tuple[int, float]]:
        return self.recommend_batch([history], k, exclude_history)[0]

    def recommend_batch(self, histories, k: int, exclude_history: bool = True) -> list[list[tuple[int, float]]]:
        users = self.base.user_vectors(histories)
        extra = max((len(set(h)) for h in histories), default=0) if exclude_history else 0
        want = max(1, min(k + extra, self.base.num_items - self.hidden_base))
        q = np.ascontiguousarray(users, dtype=np.float32)
        if self._params is not None:
            scores, ids = self.base.index.index.search(q, want, params=self._params)
        else:
            scores, ids = self.base.index.index.search(q, want)
        side = users @ self.side_rows.T if self.side_idx.size else np.zeros((len(histories), 0), dtype=np.float32)
        side[:, self.side_blocked] = -np.inf
        out = []
        for r, h in enumerate(histories):
            seen = set(int(i) for i in h) if exclude_history else set()
            cand = [(float(s), int(i)) for s, i in zip(scores[r], ids[r]) if i >= 0]
            top = np.argpartition(-side[r], want - 1)[:want] if side.shape[1] > want else np.arange(side.shape[1])
            cand += [(float(side[r, j]), int(self.side_idx[j])) for j in top if np.isfinite(side[r, j])]
            cand.sort(key=lambda x: (-x[0], x[1]))
            out.append([(i, s) for s, i in cand if i not in seen][:k])
        return out


# -- snapshots -------------------------------------------------------------------------------------
@dataclass
class BaseParts:
    """How a live catalog reaches the bundle's own (base) structures, each loaded on first use."""

    catalog: Catalog
    popularity: np.ndarray
    index: Callable[[], BM25Index]
    trie: Callable[[], Any]
    tokenizer: Callable[[], Any]
    embedding: Callable[[], Any]
    fallback: Callable[[], Any]
    bm25_text: Callable[[Item], str]    # what BM25 indexes per item
    target_text: Callable[[Item], str]  # what the model writes (tree paths, embedding v_T)
    semantic: Callable[[list[Item]], np.ndarray | None] = lambda items: None  # fallback's semantic inputs


class CatalogSnapshot:
    """One immutable state of the catalog and its derived parts (built on first use)."""

    PARTS = ("index", "fallback", "trie", "embedding")

    def __init__(self, live: LiveCatalog, version: int, catalog: Catalog, withdrawn: np.ndarray,
                 popularity: np.ndarray, changed: np.ndarray) -> None:
        self.live = live
        self.version = version
        self.catalog = catalog
        self.withdrawn = withdrawn  # bool [N]
        self.popularity = popularity
        self.changed = changed  # sorted catalog indices whose record differs from the base (added, updated)
        self._parts: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def num_active(self) -> int:
        return int(len(self.catalog) - self.withdrawn.sum())

    def part(self, name: str) -> Any:
        if name not in self._parts:
            with self._lock:
                if name not in self._parts:
                    t = time.perf_counter()
                    self._parts[name] = getattr(self.live, f"_build_{name}")(self)
                    log.debug("catalog v%d: %s built in %.2f s", self.version, name, time.perf_counter() - t)
        return self._parts[name]

    def loaded(self) -> list[str]:
        return [p for p in self.PARTS if p in self._parts]

    @property
    def index(self) -> BM25Index:
        return self.part("index")

    @property
    def fallback(self):
        return self.part("fallback")

    @property
    def trie(self):
        return self.part("trie")

    @property
    def embedding(self):
        return self.part("embedding")

    def is_withdrawn(self, item_id: str) -> bool:
        i = self.catalog.get_index(item_id)
        return i is not None and bool(self.withdrawn[i])


def _no_pace() -> None:
    return None


class Pace:
    """Spreads CPU work over time: called in a loop, it sleeps after every ``slice_s`` of work so
    that the work computes only a ``duty`` share of the time. A catalog change in a serving process
    is mostly Python (validation, the batch file, tokenising); at full speed it takes the GIL from
    the requests beside it for ~0.2-0.4 s per 1,000 items and their p99 doubled
    (bench/catalog_update.py), while visibility has seconds to spare."""

    def __init__(self, duty: float, slice_s: float = 0.002) -> None:
        self.rest = slice_s * (1.0 - duty) / duty
        self.slice_s = slice_s
        self.t = time.perf_counter()

    def __call__(self) -> None:
        if time.perf_counter() - self.t >= self.slice_s:
            time.sleep(self.rest)
            self.t = time.perf_counter()


class LayeredItems(Sequence):
    """A catalog's item list as the base list (shared, never copied) with re-texted items and
    appended ones on top: copying a 1M-item list touches a million objects (their reference
    counts) while holding the GIL, and freeing the old copy touches them again."""

    def __init__(self, base: list[Item], replaced: dict[int, Item], appended: list[Item]) -> None:
        self.base, self.replaced, self.appended = base, replaced, appended
        self.n_base = len(base)

    @classmethod
    def after(cls, current: Sequence[Item], base: list[Item]) -> LayeredItems:
        """A new layered list over ``base`` holding what ``current`` holds (its layers copied)."""
        if isinstance(current, LayeredItems):
            return cls(base, dict(current.replaced), list(current.appended))
        return cls(base, {}, [])

    def __len__(self) -> int:
        return self.n_base + len(self.appended)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if i >= self.n_base:
            return self.appended[i - self.n_base]
        return self.replaced.get(i) or self.base[i]

    def __setitem__(self, i: int, item: Item) -> None:
        if i >= self.n_base:
            self.appended[i - self.n_base] = item
        else:
            self.replaced[i] = item

    def __iter__(self):
        replaced = self.replaced
        for i, item in enumerate(self.base):
            yield replaced.get(i, item) if replaced else item
        yield from self.appended

    def append(self, item: Item) -> None:
        self.appended.append(item)


def _catalog_of(items: Sequence[Item], index: ChainMap) -> Catalog:
    """A Catalog over already checked items and id map (no O(N) rebuild or copy of the map)."""
    cat = Catalog.__new__(Catalog)
    cat.items, cat._index = items, index
    return cat


class LiveCatalog:
    """The changing catalog of one bundle: its current :attr:`snapshot`, and the changes."""

    def __init__(self, path: Path, base: BaseParts) -> None:
        self.path = Path(path)
        self.base = base
        self.n_base = len(base.catalog)
        self._write = threading.Lock()
        self._semantic_cache: dict[tuple[int, str], np.ndarray] = {}
        self._vector_cache: dict[tuple[int, str], np.ndarray] = {}
        self._pace: Callable[[], None] = _no_pace
        self.batches: list[str] = []
        withdrawn = np.zeros(self.n_base, dtype=bool)
        snap = CatalogSnapshot(self, 0, base.catalog, withdrawn, np.asarray(base.popularity, dtype=np.int64),
                               np.empty(0, dtype=np.int64))
        state = self.state_path
        if state.exists():
            try:
                info = json.loads(state.read_text(encoding="utf-8"))
                if info.get("format") != STATE_FORMAT:
                    raise ValueError(f"format {info.get('format')!r}")
                self.batches = list(info["batches"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise GenrecError(f"{state}: not a live catalog state ({type(e).__name__}: {e})") from None
            changes = []
            for name in self.batches:
                changes.extend(self._read_batch(self.live_dir / name))
            snap = self._advance(snap, changes, len(self.batches))
        self.snapshot = snap

    # -- files ------------------------------------------------------------------------------
    @property
    def live_dir(self) -> Path:
        return self.path / LIVE_DIR

    @property
    def state_path(self) -> Path:
        return self.live_dir / STATE

    @staticmethod
    def _read_batch(path: Path) -> list[Change]:
        out = []
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    try:
                        out.append(Change.from_json(json.loads(line)))
                    except (ValueError, KeyError, TypeError) as e:
                        raise GenrecError(f"{path}, line {n}: not a catalog change ({type(e).__name__}: {e})") \
                            from None
        except OSError as e:
            raise GenrecError(f"{path}: a catalog change batch named by {STATE} cannot be read: {e}") from None
        return out

    def _on_disk_batches(self) -> list[str]:
        try:
            return list(json.loads(self.state_path.read_text(encoding="utf-8"))["batches"])
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise GenrecError(f"{self.state_path}: unreadable ({type(e).__name__}: {e})") from None

    @contextlib.contextmanager
    def _exclusive(self):
        """The bundle's change lock across processes (a CLI beside a server): held while a batch
        is written, and the state on disk must still be the one this process loaded."""
        try:
            self.live_dir.mkdir(exist_ok=True)
            fd = os.open(self.live_dir / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise CatalogChangeError(f"cannot write catalog changes into {self.live_dir}: {e.strerror}",
                                     status=503) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._on_disk_batches() != self.batches:
                raise CatalogChangeError(f"{self.state_path} was changed by another process since this one loaded "
                                         "the bundle; load it again (restart the server) to see those changes",
                                         status=409)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _persist(self, changes: list[Change]) -> None:
        """The batch file aside (fsynced), then the state switched by one os.replace."""
        d = self.live_dir
        name = f"{len(self.batches) + 1:06d}.jsonl"
        lines = []
        for c in changes:
            self._pace()
            lines.append(json.dumps(c.to_json(), ensure_ascii=False) + "\n")
        _write_durably(d / name, "".join(lines))
        pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
        if pause > 0:
            time.sleep(pause)
        state = {"format": STATE_FORMAT, "version": 1, "batches": [*self.batches, name],
                 "base_items": self.n_base}
        _write_durably(d / STATE, json.dumps(state, indent=1) + "\n")
        self.batches.append(name)

    def _persist_checked(self, changes: list[Change]) -> None:
        with self._exclusive():
            try:
                self._persist(changes)
            except OSError as e:
                raise CatalogChangeError(f"cannot write the change into {self.live_dir}: {e.strerror or e}; "
                                         "nothing was applied", status=503) from None

    # -- changes ------------------------------------------------------------------------------
    def _advance(self, snap: CatalogSnapshot, changes: Sequence[Change], version: int) -> CatalogSnapshot:
        """The snapshot after ``changes`` (already validated): new list, map and masks; the base
        structures shared."""
        items = LayeredItems.after(snap.catalog.items, self.base.catalog.items)
        # ids added since the base in a small dict of their own before the base map (never copied)
        added_ids = dict(snap.catalog._index.maps[0]) if isinstance(snap.catalog._index, ChainMap) else {}
        withdrawn = snap.withdrawn
        added = [c for c in changes if c.op == "add"]
        if added:
            withdrawn = np.concatenate([withdrawn, np.zeros(len(added), dtype=bool)])
        else:
            withdrawn = withdrawn.copy()
        changed = set(snap.changed.tolist())
        index = ChainMap(added_ids, self.base.catalog._index)
        for c in changes:
            self._pace()
            if c.op == "add":
                added_ids[c.item_id] = len(items)
                changed.add(len(items))
                items.append(c.item)
            elif c.op == "update":
                i = index[c.item_id]
                items[i] = c.item
                if i < self.n_base and c.item == self.base.catalog[i]:
                    changed.discard(i)
                else:
                    changed.add(i)
            else:
                withdrawn[index[c.item_id]] = c.op == "withdraw"
        pop = np.concatenate([self.base.popularity, np.zeros(len(items) - self.n_base, dtype=np.int64)]) \
            if len(items) > self.n_base else np.asarray(self.base.popularity, dtype=np.int64)
        return CatalogSnapshot(self, version, _catalog_of(items, index), withdrawn, pop,
                               np.asarray(sorted(changed), dtype=np.int64))

    def validate(self, op: str, payload: Any, max_batch: int | None = None) -> list[Change]:
        """``payload``: add: a list of item objects; update: a list of (item id, fields) pairs;
        withdraw / restore: a list of item ids. Raises :class:`CatalogChangeError` at the first
        problem (nothing is applied)."""
        if op not in OPS:
            raise CatalogChangeError(f"unknown change {op!r}; one of {', '.join(OPS)}")
        snap = self.snapshot
        cat = snap.catalog
        rows = _check_batch(payload, max_batch)
        out: list[Change] = []
        seen: set[str] = set()
        for pos, row in enumerate(rows):
            self._pace()
            if op == "add":
                rid = row.get("item_id") if isinstance(row, dict) else None
                label = f"{pos} ({rid!r})" if isinstance(rid, str) else str(pos)
                item = parse_item(row, label)
                label = f"{pos} ({item.item_id!r})"
                if item.item_id in seen:
                    raise CatalogChangeError("appears twice in the batch", status=409, item=label, field="item_id")
                i = cat.get_index(item.item_id)
                if i is not None:
                    what = ("collides with a withdrawn item; restore it (and update it) instead"
                            if snap.withdrawn[i] else "is already in the catalog; update it instead")
                    raise CatalogChangeError(what, status=409, item=label, field="item_id")
                out.append(Change("add", item.item_id, item))
            else:
                if op == "update":
                    if not (isinstance(row, (list, tuple)) and len(row) == 2):
                        raise CatalogChangeError("must be an (item id, fields) pair", item=str(pos))
                    item_id, fields = row
                else:
                    item_id, fields = row, None
                if not isinstance(item_id, str) or not item_id:
                    raise CatalogChangeError(f"must be a non-empty string, got {item_id!r}", item=str(pos),
                                             field="item_id")
                label = repr(item_id)
                if item_id in seen:
                    raise CatalogChangeError("appears twice in the batch", status=409, item=label, field="item_id")
                i = cat.get_index(item_id)
                if i is None:
                    raise CatalogChangeError("is not in the catalog", status=404, item=label, field="item_id")
                if op == "update":
                    if isinstance(fields, dict) and not (set(fields) - {"item_id"}):
                        raise CatalogChangeError("nothing to update: give at least one field", item=label)
                    out.append(Change("update", item_id, parse_item(fields, label, item_id, cat[i])))
                elif op == "withdraw":
                    if snap.withdrawn[i]:
                        raise CatalogChangeError("is already withdrawn", status=409, item=label, field="item_id")
                    out.append(Change("withdraw", item_id))
                else:
                    if not snap.withdrawn[i]:
                        raise CatalogChangeError("is not withdrawn", status=409, item=label, field="item_id")
                    out.append(Change("restore", item_id))
            seen.add(out[-1].item_id)
        return out

    def apply(self, op: str, payload: Any, max_batch: int | None = None, duty: float | None = None
              ) -> CatalogSnapshot:
        """Validate, write durably, build the next snapshot (with the parts the current one has
        loaded) and publish it; returns it. One change at a time. ``duty`` (0-1): the share of
        time the change may compute, the rest slept in slices (:class:`Pace`), so that a server's
        requests keep their CPU and GIL; None: full speed."""
        with self._write:
            self._pace = Pace(duty) if duty else _no_pace
            try:
                return self._apply(op, payload, max_batch)
            finally:
                self._pace = _no_pace

    def _apply(self, op: str, payload: Any, max_batch: int | None) -> CatalogSnapshot:
        changes = self.validate(op, payload, max_batch)
        old = self.snapshot
        new = self._advance(old, changes, old.version + 1)
        for name in old.loaded():  # built before the swap: no request pays for it
            new.part(name)
        self._persist_checked(changes)
        self.snapshot = new
        log.info("catalog v%d: %s %d item(s) (%d items, %d withdrawn)", new.version, op, len(changes),
                 len(new.catalog), int(new.withdrawn.sum()))
        return new

    # -- derived parts --------------------------------------------------------------------------
    def _build_index(self, snap: CatalogSnapshot) -> BM25Index:
        base = self.base.index()
        hidden = np.flatnonzero(snap.withdrawn[:self.n_base])
        changed = [i for i in snap.changed.tolist() if not snap.withdrawn[i]]
        hidden = np.union1d(hidden, [i for i in snap.changed.tolist() if i < self.n_base]).astype(np.int64)
        if not changed and not hidden.size and len(snap.catalog) == self.n_base:
            return base
        texts = {i: self.base.bm25_text(snap.catalog[i]) for i in changed}
        return overlay_bm25(base, texts, hidden, len(snap.catalog), self._pace)

    def _build_trie(self, snap: CatalogSnapshot):
        base = self.base.trie()
        if not snap.changed.size and not snap.withdrawn.any():
            return base
        tok = self.base.tokenizer()
        changed = snap.changed.tolist()
        texts = [self.base.target_text(snap.catalog[i]) for i in changed]
        ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
        meta = dict(base.meta, num_items=len(snap.catalog), live_version=snap.version)
        meta.pop("path", None)
        return overlay_trie(base, dict(zip(changed, ids)), ~snap.withdrawn, meta)

    def _changed_vectors(self, snap: CatalogSnapshot, cache: dict, indices: list[int],
                         encode: Callable[[list[Item]], np.ndarray | None]) -> np.ndarray | None:
        """Vectors of items (by index) from ``encode``, cached by (index, record) across snapshots."""
        keys = [(i, json.dumps(snap.catalog[i].to_dict(), sort_keys=True)) for i in indices]
        todo = [k for k in keys if k not in cache]
        if todo:
            vecs = encode([snap.catalog[i] for i, _ in todo])
            if vecs is None:
                return None
            cache.update(zip(todo, np.asarray(vecs, dtype=np.float32)))
        return np.stack([cache[k] for k in keys]) if keys else None

    def _build_embedding(self, snap: CatalogSnapshot):
        from genrec.calrec_encoder import CatalogEmbedding

        base = self.base.embedding()
        if not snap.changed.size:
            return base
        vecs = np.zeros((len(snap.catalog), base.item_vectors.shape[1]), dtype=np.float32)
        vecs[:self.n_base] = base.item_vectors
        changed = snap.changed.tolist()
        vecs[changed] = self._changed_vectors(
            snap, self._vector_cache, changed,
            lambda items: base.encoder.items([self.base.target_text(it) for it in items]))
        return CatalogEmbedding(base.encoder, vecs, base.template)

    def _build_fallback(self, snap: CatalogSnapshot):
        from genrec.esr.cold_items import cold_output_rows, retexted_output_rows

        base = self.base.fallback()
        if not hasattr(base, "model"):  # the popularity ranking
            return MaskedPopularity.over(base, snap.popularity, snap.withdrawn)
        if not snap.changed.size and not snap.withdrawn.any():
            return base
        changed = snap.changed.tolist()
        semantic = self._changed_vectors(snap, self._semantic_cache, changed, self.base.semantic) \
            if changed else None
        sem_of = dict(zip(changed, semantic)) if semantic is not None else {}
        new = [i for i in changed if i >= base.num_items]
        old = [i for i in changed if i < base.num_items]
        idx, rows = [], []
        if new:
            sem = np.stack([sem_of[i] for i in new]) if sem_of else None
            rows.append(cold_output_rows(base.model, base._tables, len(new), sem))
            idx += new
        if old and sem_of:
            re = retexted_output_rows(base.model, base._tables, np.asarray(old), np.stack([sem_of[i] for i in old]))
            if re is not None:
                rows.append(re)
                idx += old
        width = base._table.shape[1]
        table = np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)
        return LiveFallbackScorer(base, len(snap.catalog), snap.withdrawn, np.asarray(idx, dtype=np.int64), table)


def _write_durably(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temporary file, fsynced, renamed, and the folder fsynced."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_items_file(path: str | os.PathLike) -> list[dict]:
    """Item objects from a JSON-lines file (one item a line), errors naming the line."""
    from genrec.data.jsonl import read_json_lines

    return [row for _, row in read_json_lines(path, "items file")]


def change_summary(snap: CatalogSnapshot, op: str, count: int) -> dict:
    """What an accepted change answers: the catalog version and sizes after it."""
    return {"op": op, "count": count, "version": snap.version, "num_items": len(snap.catalog),
            "withdrawn": int(snap.withdrawn.sum())}


__all__ = ["BaseParts", "CatalogChangeError", "CatalogSnapshot", "Change", "LiveCatalog", "LiveFallbackScorer",
           "MaskedPopularity", "OverlayBM25Index", "change_summary", "overlay_bm25", "overlay_trie", "parse_item",
           "read_items_file", "trie_paths"]
