"""The recommender pipeline: history → prompt → a generative mode → (fusion) → top-K items.

One object answers a user both ways the product knows: the generative path (CALRec: the LLM
writes the next item as text, QRR grounding maps the samples onto the catalog, SPEC.md §1)
and a fast fallback (LLM-ESR, or training popularity until that model exists). The fallback
answers whenever generation fails, returns nothing usable, or matches no catalog item, and
the answer says so (``path`` and ``reason``), so callers and metrics can tell them apart.

Generative modes (``mode``, per request too; SPEC.md §1 and §6):

* ``qrr`` (the default): N_gen free samples grounded by quasi-round-robin BM25;
* ``constrained_beam``: beam search of width N_gen inside the prefix tree of the item texts
  (genrec.decoding), each finished beam an item scored by its summed log-prob;
* ``constrained_sample``: N_gen samples drawn inside that tree, each exactly one item;
* ``rerank``: the fallback's top-M items rescored by the LLM's log P(item text | prompt);
* ``embedding``: no decoding: the fine-tuned model's contrastive heads score the catalog by
  cos(v_U, v_T) / τ (genrec.calrec_encoder), its top M kept.

``fusion`` (genrec.fusion) then optionally combines the mode's catalog signal with the
fallback's full-catalog scores. Answers carry ``mode`` (e.g. ``constrained_beam+zsum``).

The steps are public (:meth:`Recommender.prepare`, :meth:`Recommender.ground`,
:meth:`Recommender.fallback`) because the HTTP server runs generation itself, in vLLM's async
engine under a latency budget, and only borrows the steps before and after it.

Example::

    from genrec.bundle import Bundle

    rec = Bundle.load("my-bundle").recommender(backend="hf")
    answer = rec.recommend(["ele-0003", "ele-0017"], k=5)
    for item in answer.items:
        print(item.item_id, item.title, round(item.score, 3))
    print(answer.path, answer.unknown_ids)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from genrec.data.catalog import Catalog
from genrec.errors import GenrecError
from genrec.fusion import FusionSettings, fuse
from genrec.prompting import PromptTemplate

log = logging.getLogger(__name__)

PATH_GENERATIVE = "generative"
PATH_FALLBACK = "fallback"  # the LLM-ESR model
PATH_POPULARITY = "popularity"  # training popularity (no fallback model in the bundle)
PATHS = (PATH_GENERATIVE, PATH_FALLBACK, PATH_POPULARITY)

MODE_QRR = "qrr"
MODE_BEAM = "constrained_beam"
MODE_SAMPLE = "constrained_sample"
MODE_RERANK = "rerank"
MODE_EMBEDDING = "embedding"
MODES = (MODE_QRR, MODE_BEAM, MODE_SAMPLE, MODE_RERANK, MODE_EMBEDDING)


class RequestError(GenrecError):
    """A request the recommender cannot answer as asked; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class NoKnownItemsError(RequestError):
    """None of the history's item ids is in the catalog."""

    def __init__(self, unknown_ids: Sequence[str]) -> None:
        self.unknown_ids = list(unknown_ids)
        shown = ", ".join(repr(x) for x in self.unknown_ids[:10])
        more = f" and {len(self.unknown_ids) - 10} more" if len(self.unknown_ids) > 10 else ""
        super().__init__(f"none of the item ids is in the catalog ({shown}{more})", field="history")


class Scorer(Protocol):
    """What a fallback must offer: the LLM-ESR model and the popularity ranking both do."""

    def recommend(self, history: list[int], k: int, exclude_history: bool = True) -> list[tuple[int, float]]: ...


class SampleLike(Protocol):
    text: str
    score: float


class Generator(Protocol):
    def generate(self, prompts: list[str], n: int, seed: int | None = None) -> list[list[Any]]: ...


@dataclass
class RecommenderSettings:
    """Pipeline settings (a bundle stores them in ``settings.yaml`` under ``recommender``)."""

    template: str = "calrec"  # a template name, or a .yaml path (bundles pin a copy)
    max_prompt_tokens: int | None = None  # None: the template's max_tokens
    max_history_items: int = 200  # newest items considered at all (cheap cut before the token budget)
    n_gen: int = 10  # N_gen samples per user
    n_preds: int = 10  # N_preds samples kept for grounding (SPEC §1)
    eps: float = 0.01  # ε of the exp(ε·s) modulation
    k: int = 10  # default list length
    exclude_history: bool = True  # drop the user's own items from the answer
    seed: int | None = 0  # sampling seed (deterministic answers on the transformers backend)
    mode: str = MODE_QRR  # qrr | constrained_beam | constrained_sample | rerank | embedding (module docstring)
    rerank_m: int = 50  # M: how many of the fallback's top items the rerank mode rescores
    embedding_m: int = 500  # M: how many top items of the embedding mode are kept (0 = the whole catalog)
    fusion: FusionSettings = field(default_factory=FusionSettings)  # none | zsum | rrf with the fallback


@dataclass
class ScoredItem:
    index: int
    item_id: str
    title: str
    score: float

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "title": self.title, "score": self.score}


@dataclass
class Prepared:
    """A validated request: known history indices (oldest first), unknown ids, the prompt."""

    history: list[int]
    unknown_ids: list[str]
    prompt: str
    k: int
    exclude_history: bool


@dataclass
class Recommendation:
    items: list[ScoredItem]
    path: str
    unknown_ids: list[str] = field(default_factory=list)
    reason: str | None = None  # why the fallback answered (None on the generative path)
    samples: list[Any] = field(default_factory=list)  # generation samples (text, score), when any
    prompt: str = ""
    mode: str | None = None  # the generative mode (+fusion) behind the items; None: the fallback alone
    filled: int = 0  # trailing items taken from the fallback because the mode found fewer than k

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    def to_dict(self) -> dict:
        return {"items": [it.to_dict() for it in self.items], "path": self.path, "mode": self.mode,
                "filled": self.filled, "unknown_ids": list(self.unknown_ids), "reason": self.reason}


def top_k_with_ties(scores: np.ndarray, k: int, tie_break: np.ndarray | None = None,
                    exclude: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best items, best first, by partial selection.

    Items tied on score (QRR leaves many at 0) are ordered by ``tie_break`` (higher first,
    e.g. training popularity), then by index, so a sample that matches nothing still yields a
    full, deterministic list. ``exclude`` indices are never returned.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    allowed = np.ones(n, dtype=bool)
    if len(exclude):
        allowed[np.asarray(list(exclude), dtype=np.int64)] = False
    cand = np.flatnonzero(allowed)
    k = min(int(k), cand.size)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    s = scores[cand]
    kth = np.partition(s, s.size - k)[s.size - k]  # the k-th largest value
    above = cand[s > kth]
    tied = cand[s == kth]
    need = k - above.size
    if tied.size > need:
        if tie_break is not None:
            order = np.lexsort((tied, -np.asarray(tie_break, dtype=np.float64)[tied]))
            tied = tied[order[:need]]
        else:
            tied = tied[:need]
    chosen = np.concatenate([above, tied])
    tb = np.zeros(chosen.size) if tie_break is None else -np.asarray(tie_break, dtype=np.float64)[chosen]
    order = np.lexsort((chosen, tb, -scores[chosen]))
    chosen = chosen[order]
    return chosen, scores[chosen]


def _usable(samples: Sequence[Any]) -> list[Any]:
    """Samples with some text and a finite score (empty or NaN ones cannot be grounded)."""
    return [s for s in samples if getattr(s, "text", "").strip() and np.isfinite(getattr(s, "score", np.nan))]


class Recommender:
    """History (source item ids) → top-K catalog items, generative first, fallback when needed."""

    def __init__(self, catalog: Catalog, index: Any, template: PromptTemplate, generator: Generator | None,
                 fallback: Scorer, settings: RecommenderSettings | None = None,
                 fallback_path: str = PATH_POPULARITY, tokenizer: Any = None,
                 popularity: np.ndarray | None = None, trie: Any = None,
                 constrained_generator: Any = None, embedding: Any = None, blocked: np.ndarray | None = None) -> None:
        """``trie``: the item prefix tree (or a zero-argument callable that loads it on first
        use); ``constrained_generator``: what runs the modes ``generator`` cannot (e.g. the
        transformers backend for beam search beside a vLLM generator), or a callable making it;
        ``embedding``: the catalog's :class:`~genrec.calrec_encoder.CatalogEmbedding` for the
        embedding mode (or a callable making it); ``blocked``: a mask of items never to return
        (withdrawn from a live catalog, genrec.live_catalog), still valid in histories."""
        if fallback_path not in (PATH_FALLBACK, PATH_POPULARITY):
            raise GenrecError(f"fallback_path must be {PATH_FALLBACK!r} or {PATH_POPULARITY!r}, got {fallback_path!r}")
        self.catalog = catalog
        self.index = index
        self.template = template
        self.generator = generator
        self.fallback_scorer = fallback
        self.settings = settings or RecommenderSettings()
        self.fallback_path = fallback_path
        self.tokenizer = tokenizer if tokenizer is not None else getattr(generator, "tokenizer", None)
        self.popularity = popularity
        self._trie = trie
        self._constrained = constrained_generator
        self._embedding = embedding
        self.blocked = np.flatnonzero(blocked) if blocked is not None else np.empty(0, dtype=np.int64)
        self.num_active = len(catalog) - int(self.blocked.size)

    def excluded(self, prepared: Prepared) -> np.ndarray:
        """What no answer to ``prepared`` may hold: the blocked items, and its history if asked."""
        if not prepared.exclude_history:
            return self.blocked
        return np.union1d(self.blocked, np.asarray(prepared.history, dtype=np.int64))

    # -- steps ---------------------------------------------------------------------------
    def check_k(self, k: int | None) -> int:
        """An explicit k must fit the catalog; the default is cut to the catalog size."""
        if k is None:
            return max(1, min(self.settings.k, self.num_active))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise RequestError(f"must be an integer, got {k!r}", field="k")
        if k <= 0:
            raise RequestError(f"must be at least 1, got {k}", field="k")
        if k > self.num_active:
            raise RequestError(f"must be at most the catalog size {self.num_active}, got {k}", field="k")
        return int(k)

    def map_history(self, history_ids: Sequence[Any]) -> tuple[list[int], list[str]]:
        """Source ids → catalog indices (oldest first) and the ids the catalog lacks."""
        if isinstance(history_ids, (str, bytes)) or not isinstance(history_ids, Sequence):
            raise RequestError("must be a list of item ids", field="history")
        if len(history_ids) == 0:
            raise RequestError("is empty; give at least one item id", field="history")
        known, unknown = [], []
        for raw in history_ids:
            if isinstance(raw, bool) or not isinstance(raw, (str, int)):
                raise RequestError(f"item ids must be strings, got {raw!r}", field="history")
            item_id = str(raw)
            i = self.catalog.get_index(item_id)
            if i is None:
                unknown.append(item_id)
            else:
                known.append(i)
        if not known:
            raise NoKnownItemsError(unknown)
        return known, unknown

    def build_prompt(self, history: Sequence[int]) -> str:
        """The template's history prompt; the oldest items go first when over the budget."""
        cap = self.settings.max_history_items
        items = [self.catalog[i] for i in (history[-cap:] if cap else history)]
        return self.template.render_history(items, tokenizer=self.tokenizer,
                                            max_tokens=self.settings.max_prompt_tokens)

    def prepare(self, history_ids: Sequence[Any], k: int | None = None,
                exclude_history: bool | None = None) -> Prepared:
        """Validate a request and build its prompt (raises :class:`RequestError`)."""
        k = self.check_k(k)
        known, unknown = self.map_history(history_ids)
        excl = self.settings.exclude_history if exclude_history is None else bool(exclude_history)
        return Prepared(history=known, unknown_ids=unknown, prompt=self.build_prompt(known), k=k,
                        exclude_history=excl)

    def _items(self, indices: Sequence[int], scores: Sequence[float]) -> list[ScoredItem]:
        return [ScoredItem(int(i), self.catalog[int(i)].item_id, self.catalog[int(i)].title, float(s))
                for i, s in zip(indices, scores)]

    def fallback(self, prepared: Prepared, reason: str, samples: Sequence[Any] = ()) -> Recommendation:
        """The fallback scorer's answer, marked with its path and the reason it was used."""
        path = self.fallback_path
        try:
            pairs = self.fallback_scorer.recommend(list(prepared.history), prepared.k,
                                                   exclude_history=prepared.exclude_history)
        except Exception as e:  # e.g. a fallback model that knows none of these items
            if self.popularity is None:
                raise
            log.warning("fallback scorer failed (%s); answering from popularity", e)
            idx_arr, sc_arr = top_k_with_ties(self.popularity, prepared.k, exclude=self.excluded(prepared))
            pairs = list(zip(idx_arr.tolist(), sc_arr.tolist()))
            path, reason = PATH_POPULARITY, f"{reason}; fallback model failed: {type(e).__name__}: {e}"
        if self.blocked.size:  # a scorer that does not know the live catalog's mask
            blocked = set(self.blocked.tolist())
            pairs = [p for p in pairs if int(p[0]) not in blocked]
        idx = [int(i) for i, _ in pairs]
        sc = [float(s) for _, s in pairs]
        return Recommendation(self._items(idx, sc), path, list(prepared.unknown_ids), reason,
                              list(samples), prepared.prompt)

    def grounded_scores(self, samples_per_user: Sequence[Sequence[Any]]) -> np.ndarray:
        """QRR scores [B, N_items] for many users at once (SPEC §1)."""
        from genrec.grounding import qrr_batch

        return np.asarray(qrr_batch([list(s) for s in samples_per_user], self.index,
                                    n_preds=self.settings.n_preds, eps=self.settings.eps))

    def ground(self, prepared: Prepared, samples: Sequence[Any], scores: np.ndarray | None = None,
               fusion: FusionSettings | str | None = None) -> Recommendation:
        """Ground one user's QRR samples (then fuse, if asked); falls back, saying why, when
        none is usable or matches."""
        signal, reason = self._qrr_signal(samples, scores)
        return self.finish(prepared, MODE_QRR, self.check_fusion(fusion, MODE_QRR), signal, samples, reason)

    def _qrr_signal(self, samples: Sequence[Any], scores: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
        usable = _usable(samples)
        if not usable:
            return None, "generation returned no usable text"
        try:
            if scores is None:
                scores = self.grounded_scores([usable])[0]
        except Exception as e:  # grounding must never turn a request into an error
            log.exception("grounding failed")
            return None, f"grounding failed: {type(e).__name__}: {e}"
        if not np.any(scores > 0):
            return None, "generated text matched no catalog item"
        return scores, None

    # -- modes ---------------------------------------------------------------------------
    def check_mode(self, mode: str | None) -> str:
        mode = self.settings.mode if mode is None else mode
        if mode not in MODES:
            raise RequestError(f"must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
        return mode

    def check_fusion(self, fusion: FusionSettings | str | None, mode: str | None = None) -> FusionSettings:
        """None: the settings' fusion; a method name: that method with the settings' weights
        (the weights tuned for this mode and method when the settings hold them)."""
        mode = self.check_mode(mode)
        if fusion is None:
            return self.settings.fusion.for_mode(mode)
        if isinstance(fusion, str):
            from genrec.fusion import METHODS

            if fusion not in METHODS:
                raise RequestError(f"must be one of {', '.join(METHODS)}, got {fusion!r}", field="fusion")
            return self.settings.fusion.for_mode(mode, fusion)
        return fusion.check()

    @property
    def trie(self):
        """The item prefix tree (loaded or built on first use)."""
        if callable(self._trie):
            self._trie = self._trie()
        if self._trie is None:
            raise GenrecError("this recommender has no item prefix tree (constrained modes need one)")
        return self._trie

    @property
    def embedding(self):
        """The catalog embedding of the embedding mode (built on first use)."""
        if callable(self._embedding) and not hasattr(self._embedding, "scores"):
            self._embedding = self._embedding()
        if self._embedding is None:
            raise GenrecError("this recommender has no catalog embedding (the embedding mode needs a model "
                              "fine-tuned with projection heads)")
        return self._embedding

    def decoder(self, method: str) -> Any:
        """The generator that offers ``method`` (constrained_beam, constrained_sample,
        score_candidates): the main one when it does, else the constrained one."""
        def offers(gen: Any) -> bool:
            return callable(getattr(gen, method, None)) and getattr(gen, "supports", lambda m: True)(method)

        if self.generator is not None and offers(self.generator):
            return self.generator
        if callable(self._constrained) and not hasattr(self._constrained, method):
            self._constrained = self._constrained()  # a factory: build the generator now
        if self._constrained is not None and offers(self._constrained):
            return self._constrained
        raise GenrecError(f"no generator here offers {method} (the transformers backend does)")

    def warm(self, mode: str | None = None) -> None:
        """Load what ``mode`` needs (the tree, the generator that runs it) before a request does."""
        mode = self.check_mode(mode)
        if mode in (MODE_BEAM, MODE_SAMPLE):
            _ = self.trie
        if mode == MODE_EMBEDDING:
            _ = self.embedding
        method = {MODE_BEAM: "constrained_beam", MODE_SAMPLE: "constrained_sample", MODE_RERANK: "score_candidates"}
        if mode in method:
            self.decoder(method[mode])

    def fallback_scores(self, prepared: Prepared) -> np.ndarray:
        """The fallback's scores over the whole catalog (training popularity if it fails)."""
        try:
            return np.asarray(self.fallback_scorer.score_batch([list(prepared.history)])[0], dtype=np.float64)
        except Exception as e:
            if self.popularity is None:
                raise
            log.warning("fallback scorer failed (%s); fusing with popularity", e)
            return np.asarray(self.popularity, dtype=np.float64)

    def _fallback_pairs(self, prepared: Prepared, k: int) -> list[tuple[int, float]]:
        try:
            return self.fallback_scorer.recommend(list(prepared.history), k, exclude_history=prepared.exclude_history)
        except Exception:
            if self.popularity is None:
                raise
            idx, sc = top_k_with_ties(self.popularity, k, exclude=self.excluded(prepared))
            return list(zip(idx.tolist(), sc.tolist()))

    def target_token_ids(self, indices: Sequence[int], tokenizer: Any = None) -> list[list[int]]:
        """Token ids of these items' target texts (what the model generates; the tree's paths)."""
        tok = tokenizer if tokenizer is not None else self.tokenizer
        texts = [self.template.render_target(self.catalog[int(i)]) for i in indices]
        return [list(x) for x in tok(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def mode_signals(self, live: Sequence[Prepared], mode: str, seed: int | None
                     ) -> list[tuple[np.ndarray | None, list[Any], str | None]]:
        """Per user: (the mode's catalog signal, or None; its samples or decoded paths; why
        there is no signal). Signals are QRR scores (0 = unmatched) for ``qrr``, summed
        log-probs with -inf for the items not reached for the other modes. Raises when the
        generator fails (callers answer from the fallback)."""
        from genrec.decoding.constrained import catalog_signal

        prompts = [p.prompt for p in live]
        n = len(self.catalog)
        if mode == MODE_QRR:
            samples = self.generator.generate(prompts, n=self.settings.n_gen, seed=seed)
            if len(samples) != len(live):
                raise GenrecError(f"generator returned {len(samples)} sample lists for {len(live)} prompts")
            usable = [_usable(s) for s in samples]
            rows = [i for i, u in enumerate(usable) if u]
            matrix: dict[int, np.ndarray] = {}
            if rows:
                try:
                    grounded = self.grounded_scores([usable[i] for i in rows])
                    matrix = {i: grounded[j] for j, i in enumerate(rows)}
                except Exception as e:
                    log.exception("grounding failed")
                    return [(None, list(s), f"grounding failed: {type(e).__name__}: {e}") for s in samples]
            out = []
            for i, s in enumerate(samples):
                signal, reason = self._qrr_signal(s, matrix.get(i)) if i in matrix else \
                    (None, "generation returned no usable text")
                out.append((signal, list(s), reason))
            return out
        if mode in (MODE_BEAM, MODE_SAMPLE):
            trie = self.trie
            if mode == MODE_BEAM:
                gen = self.decoder("constrained_beam")
                decoded = gen.constrained_beam(prompts, trie, width=self.settings.n_gen)
            else:
                gen = self.decoder("constrained_sample")
                decoded = gen.constrained_sample(prompts, trie, n=self.settings.n_gen, seed=seed)
            budget = getattr(getattr(gen, "cfg", None), "max_new_tokens", "?")
            return [(catalog_signal(d, n), list(d), None) if d else
                    (None, [], f"constrained decoding finished no item within {budget} tokens") for d in decoded]
        if mode == MODE_EMBEDDING:
            return [(self._top_m(row, self.settings.embedding_m), [], None)
                    for row in self.embedding.scores(prompts)]
        gen = self.decoder("score_candidates")
        out = []
        for p in live:
            cands = [i for i, _ in self._fallback_pairs(p, max(1, self.settings.rerank_m))]
            if not cands:
                out.append((None, [], "the fallback returned no candidates to rerank"))
                continue
            scores = gen.score_candidates(p.prompt, self.target_token_ids(cands, getattr(gen, "tokenizer", None)))
            signal = np.full(n, -np.inf)
            signal[np.asarray(cands, dtype=np.int64)] = scores
            out.append((signal, list(zip(cands, scores)), None))
        return out

    @staticmethod
    def _top_m(scores: np.ndarray, m: int) -> np.ndarray:
        """The M best scores kept, the rest absent (-inf); m = 0 keeps all."""
        if m <= 0 or m >= scores.shape[0]:
            return scores
        out = np.full_like(scores, -np.inf)
        keep = np.argpartition(-scores, m - 1)[:m]
        out[keep] = scores[keep]
        return out

    def finish(self, prepared: Prepared, mode: str, fusion: FusionSettings, signal: np.ndarray | None,
               samples: Sequence[Any] = (), reason: str | None = None) -> Recommendation:
        """One user's answer from a mode's signal: fused with the fallback's scores when
        ``fusion.method`` is set; alone otherwise (QRR: the whole catalog ranked, ties by
        popularity; other modes: the items the mode reached, then the fallback's to fill k)."""
        if signal is None:
            return self.fallback(prepared, reason or "the generative mode returned nothing", samples)
        exclude = self.excluded(prepared)
        common = dict(unknown_ids=list(prepared.unknown_ids), samples=list(samples), prompt=prepared.prompt)
        if fusion.method != "none":
            g = np.where(signal > 0, signal, -np.inf) if mode == MODE_QRR else signal
            fused = fuse(self.fallback_scores(prepared), g, fusion)
            idx, sc = top_k_with_ties(fused, prepared.k, tie_break=self.popularity, exclude=exclude)
            return Recommendation(self._items(idx, sc), PATH_GENERATIVE, mode=f"{mode}+{fusion.method}", **common)
        if mode == MODE_QRR:
            idx, sc = top_k_with_ties(signal, prepared.k, tie_break=self.popularity, exclude=exclude)
            return Recommendation(self._items(idx, sc), PATH_GENERATIVE, mode=mode, **common)
        found = np.isfinite(signal)
        if len(exclude):
            found[np.asarray(list(exclude), dtype=np.int64)] = False
        take = min(prepared.k, int(found.sum()))
        if take == 0:
            return self.fallback(prepared, f"{mode} reached only items of the history", samples)
        idx, sc = top_k_with_ties(np.where(found, signal, -np.inf), take, tie_break=self.popularity, exclude=exclude)
        items = self._items(idx, sc)
        filled = 0
        if take < prepared.k:
            chosen, blocked = set(idx.tolist()), set(self.blocked.tolist())
            more = [(i, s) for i, s in self._fallback_pairs(prepared, prepared.k + take) if i not in chosen
                    and i not in blocked]
            more = more[:prepared.k - take]
            items += self._items([i for i, _ in more], [s for _, s in more])
            filled = len(more)
        return Recommendation(items, PATH_GENERATIVE, mode=mode, filled=filled, **common)

    # -- whole requests ------------------------------------------------------------------
    def recommend(self, history_ids: Sequence[Any], k: int | None = None, exclude_history: bool | None = None,
                  seed: int | None | str = "default", mode: str | None = None,
                  fusion: FusionSettings | str | None = None) -> Recommendation:
        """Top-``k`` items for one history of source item ids (oldest first); ``mode`` and
        ``fusion`` (a method name or settings) override the settings for this call."""
        out = self.recommend_many([history_ids], k=k, exclude_history=exclude_history, seed=seed,
                                  errors="raise", mode=mode, fusion=fusion)
        return out[0]  # type: ignore[return-value]

    def recommend_many(self, histories: Sequence[Sequence[Any]], k: int | None = None,
                       exclude_history: bool | None = None, seed: int | None | str = "default",
                       errors: str = "raise", mode: str | None = None,
                       fusion: FusionSettings | str | None = None) -> list[Recommendation | RequestError]:
        """Many users in one generation batch and one batched grounding call.

        ``errors="raise"`` raises the first bad history's :class:`RequestError`;
        ``errors="return"`` puts the error in that user's place and answers the others.
        A bad ``mode`` or ``fusion`` always raises.
        """
        if errors not in ("raise", "return"):
            raise GenrecError(f"errors must be 'raise' or 'return', got {errors!r}")
        mode = self.check_mode(mode)
        fusion_settings = self.check_fusion(fusion, mode)
        seed = self.settings.seed if seed == "default" else seed
        prepared: list[Prepared | RequestError] = []
        for h in histories:
            try:
                prepared.append(self.prepare(h, k, exclude_history))
            except RequestError as e:
                if errors == "raise":
                    raise
                prepared.append(e)
        live = [p for p in prepared if isinstance(p, Prepared)]
        answers: dict[int, Recommendation] = {}
        if live:
            for p, rec in zip(live, self.answer_prepared(live, seed, mode, fusion_settings)):
                answers[id(p)] = rec
        return [p if isinstance(p, RequestError) else answers[id(p)] for p in prepared]

    def answer_prepared(self, live: list[Prepared], seed: int | None, mode: str | None = None,
                        fusion: FusionSettings | str | None = None) -> list[Recommendation]:
        """Answers for validated requests: the mode's signals, then :meth:`finish` per user;
        any generation failure is answered by the fallback, saying why."""
        mode = self.check_mode(mode)
        fusion = self.check_fusion(fusion, mode)
        if mode == MODE_EMBEDDING:
            if self._embedding is None:
                return [self.fallback(p, "no catalog embedding configured") for p in live]
        elif self.generator is None and (mode == MODE_QRR or self._constrained is None):
            return [self.fallback(p, "no generator configured") for p in live]
        try:
            per_user = self.mode_signals(live, mode, seed)
        except Exception as e:  # any generation failure is answered by the fallback, not an error
            what = "embedding" if mode == MODE_EMBEDDING else "generation"
            log.exception("%s failed", what)
            reason = f"{what} failed: {type(e).__name__}: {e}"
            return [self.fallback(p, reason) for p in live]
        return [self.finish(p, mode, fusion, *x) for p, x in zip(live, per_user)]
