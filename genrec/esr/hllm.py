"""HLLM (ByteDance 2024, ``bytedance/HLLM``) with BAHE's split: an item tower over item text and a
user model made of a causal LM's own transformer blocks, trained end to end with the catalog-wide
ranking loss (SPEC.md §9).

One module for both papers, because BAHE is HLLM made affordable, not another model: HLLM runs an
item LLM over every item's tokens with gradients and a user LLM over the sequence of item vectors;
BAHE keeps the LLM's lower layers frozen, encodes each item's text through them once and caches the
token states, and trains only the upper layers. Here that is the item tower's setting
``item_tower``:

- ``frozen``: the cached pooled text vector of each item (the item-vector cache every text model of
  the family reads) through a trainable MLP — HLLM's "frozen item LLM" ablation, and LLM-ESR's
  semantic view without the second view;
- ``tuned`` (BAHE): the top ``item_layers`` blocks of the text encoder (all-MiniLM-L6-v2, SmolLM2
  or any BERT- or Llama-type model) are copied and trained over token states that the frozen lower
  blocks computed once (first ``item_max_tokens`` tokens of the item prompt), mean-pooled, then
  projected. Every training step encodes the whole catalog through the trained blocks with
  gradients, so the full softmax's negatives move the tower as its targets do; that is what
  BAHE's cache makes affordable (a Scientific step: 4,344 items x 32 tokens through one MiniLM
  block). Two cheaper schemes were tried and fail for a shared tower (ours, measured on
  Scientific, one batch repeated): gradients through the batch's items only, with the rest of
  the catalog from a cache refreshed every 20 steps, let the model tell targets (all fresh) from
  negatives (mostly stale) by staleness; the same with the batch's cached values kept and only
  their gradients taken (straight-through) moves every item the same way and the catalog
  collapses (loss back to ln N), since nothing pushes the negatives away.

The user model (``user_model``):

- ``llm``: ``user_layers`` blocks of a causal LM (SmolLM2-135M by default; ``user_layers_from``
  top or bottom of its stack) take the item vectors, projected to the LM's width, as input
  embeddings (no word tokens), with rotary positions over the history and a causal mask, then the
  LM's final norm and a projection back; ``user_init=random`` gives the same stack from random
  weights (HLLM's pretrained-vs-scratch ablation); ``user_lora_r`` > 0 trains LoRA adapters on the
  blocks' linear maps instead of all their weights;
- ``sasrec``: SASRec blocks of the same depth (the non-LLM control).

Scores are HLLM's: cosine between the user state and the item vector times a learned scale
(initialised at 1/0.07, capped at 100), or a plain dot product (``score=dot``). ``item_ids`` adds a
trainable ID embedding to each item vector (ours: the collaborative part LLM-ESR shows helps on
small catalogs; HLLM itself has no IDs).

Serving needs neither the text encoder nor its token states: the item tower's output for every
catalog item is kept in the weights (``item_cache``), refreshed whenever the model is evaluated, so
the shared faiss scorer serves the model as it serves the rest of the family.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.errors import ConfigError
from genrec.esr.family import FallbackModel
from genrec.esr.llmesr import prepare_llm_embeddings
from genrec.esr.losses import RankingLoss
from genrec.esr.sequence_encoder import SequenceEncoder, attention_mask
from genrec.hardware import inference_dtype

ITEM_TOWERS = ("frozen", "tuned")
USER_MODELS = ("llm", "sasrec")
LM_TYPES = ("bert", "llama")  # text encoders whose blocks the tuned tower and the user model can run


@dataclass
class HLLMConfig:
    """Settings of :class:`HLLM`; see the module docstring for what each part is."""

    hidden: int = 128  # width of the item and user vectors that are scored
    max_len: int = 50  # newest items of a history the user model reads
    dropout: float = 0.1  # on the user model's input vectors and the item MLP
    item_tower: str = "frozen"  # frozen (cached pooled text vectors → MLP) | tuned (BAHE: top encoder blocks trained)
    item_layers: int = 1  # tuned: encoder blocks trained over the cached lower-layer token states
    item_max_tokens: int = 64  # tuned: tokens of each item prompt kept (the head of the prompt: title first)
    item_ids: bool = True  # add a trainable ID embedding to every item vector
    user_model: str = "llm"  # llm (a causal LM's blocks) | sasrec (SASRec blocks, the non-LLM control)
    user_llm: str = "smollm2-135m"  # llm: the model whose blocks are taken (genrec.model_store spec)
    user_layers: int = 2  # blocks in the user model
    user_layers_from: str = "top"  # llm: top | bottom of the LM's stack
    user_init: str = "pretrained"  # llm: pretrained | random (the same stack from scratch)
    user_lora_r: int = 0  # llm: 0 = train every weight of the blocks; r > 0 = LoRA of rank r on their linear maps
    lm_lr: float = 1e-4  # learning rate of the pretrained blocks (user model and item tower; HLLM's); the rest: train.lr
    user_heads: int = 2  # sasrec: attention heads
    score: str = "cosine"  # cosine (x a learned scale, HLLM's) | dot
    # the transformer blocks (tower and user model) under bfloat16 autocast: auto = where the CPU has
    # native bf16 kernels (AMX / AVX512-BF16) or on CUDA (genrec.hardware), float32 elsewhere
    precision: str = "auto"

    def __post_init__(self) -> None:
        for name, value, allowed in (("item_tower", self.item_tower, ITEM_TOWERS),
                                     ("user_model", self.user_model, USER_MODELS),
                                     ("user_layers_from", self.user_layers_from, ("top", "bottom")),
                                     ("user_init", self.user_init, ("pretrained", "random")),
                                     ("score", self.score, ("cosine", "dot")),
                                     ("precision", self.precision, ("auto", "bfloat16", "float32"))):
            if value not in allowed:
                raise ConfigError(f"hllm.{name} must be one of {', '.join(allowed)}, got {value!r}")
        for name in ("hidden", "user_layers", "item_layers", "item_max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"hllm.{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


# -- running the blocks of a pretrained transformer on their own ------------------------------------
def lm_type(config) -> str:
    kind = getattr(config, "model_type", "")
    if kind not in LM_TYPES:
        raise ConfigError(f"the item tower and the LLM user model run BERT- or Llama-type blocks; "
                          f"{getattr(config, 'name_or_path', '') or 'this model'} is {kind!r}")
    return kind


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean allowed-mask → the additive mask HF attention takes (0 where allowed, -inf-ish elsewhere)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


class BlockStack(nn.Module):
    """Some blocks of a BERT- or Llama-type transformer, run on given input states.

    Llama: rotary positions from ``positions`` and the model's final RMSNorm after the blocks;
    BERT: post-norm blocks, no final norm, no positions (the lower blocks already added them).
    """

    def __init__(self, config, blocks: Sequence[nn.Module], norm: nn.Module | None) -> None:
        super().__init__()
        self.kind = lm_type(config)
        self.config = config
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm if norm is not None else nn.Identity()
        if self.kind == "llama":
            from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

            self.rotary = LlamaRotaryEmbedding(config)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, T, d]; ``allowed`` [B, T, T] (True = may attend); ``positions`` [B, T] (Llama)."""
        mask = _additive(allowed.unsqueeze(1), x.dtype)
        if self.kind == "llama":
            if positions is None:
                positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
            cos_sin = self.rotary(x, positions)
            for block in self.blocks:
                x = block(x, attention_mask=mask, position_embeddings=cos_sin)
        else:
            for block in self.blocks:
                x = block(x, attention_mask=mask)
        return self.norm(x)


def _set_sdpa(config) -> None:
    config._attn_implementation = "sdpa"


def lm_blocks(base, which: str, count: int) -> BlockStack:
    """``count`` blocks from the ``which`` (top | bottom) end of a loaded base model (LlamaModel or
    BertModel), copied, with the final norm where the model has one."""
    layers = base.layers if hasattr(base, "layers") else base.encoder.layer
    if count > len(layers):
        raise ConfigError(f"{count} blocks asked for, the model has {len(layers)}")
    chosen = layers[len(layers) - count:] if which == "top" else layers[:count]
    norm = getattr(base, "norm", None)
    _set_sdpa(base.config)
    return BlockStack(base.config, [copy.deepcopy(b) for b in chosen], copy.deepcopy(norm) if norm is not None else None)


def empty_blocks(config_dict: dict, count: int) -> BlockStack:
    """``count`` randomly initialised blocks of the architecture in ``config_dict`` (a saved
    ``config.to_dict()``): the user model's control, and the shapes a saved model loads into."""
    from transformers import AutoConfig

    cfg = dict(config_dict)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    _set_sdpa(config)
    kind = lm_type(config)
    if kind == "llama":
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm

        blocks = [LlamaDecoderLayer(config, i) for i in range(count)]
        norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
    else:
        from transformers.models.bert.modeling_bert import BertLayer

        blocks, norm = [BertLayer(config) for _ in range(count)], None
    stack = BlockStack(config, blocks, norm)
    std = getattr(config, "initializer_range", 0.02)
    for name, p in stack.named_parameters():  # HF's own initialisation: N(0, 0.02) weights, zero biases
        if p.dim() >= 2:
            nn.init.normal_(p, std=std)
        elif "norm" not in name.lower():
            nn.init.zeros_(p)
    return stack


def load_base(spec: str):
    """(base model without head, tokenizer, kind) for a causal LM spec or a sentence-transformers name."""
    from genrec.esr.embeddings import _llm_folder, _minilm_path

    path = _minilm_path(spec)  # all-MiniLM-L6-v2: the packaged sentence-transformers folder
    if not Path(path).is_dir():  # a built-in LM name, a CALRec run folder or a Hugging Face id
        path = _llm_folder(spec)
    from transformers import AutoModel, AutoTokenizer

    base = AutoModel.from_pretrained(path, dtype=torch.float32)
    lm_type(base.config)
    return base.eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def lower_token_states(base, tokenizer, texts: Sequence[str], keep_top: int, max_tokens: int,
                       batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(states [N, T, d] bf16, mask [N, T] bool): each text's token states at the input of the top
    ``keep_top`` blocks of ``base`` (the output of block L - keep_top), right-padded to T.

    BAHE's cache: computed once, never again, so the lower blocks cost one forward per item.
    """
    ids = tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
    width = max((len(x) for x in ids), default=1)
    layers = base.layers if hasattr(base, "layers") else base.encoder.layer
    depth = len(layers) - keep_top
    if depth < 0:
        raise ConfigError(f"item_layers {keep_top}: the encoder has only {len(layers)} blocks")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    states = torch.zeros(len(ids), width, base.config.hidden_size, dtype=torch.bfloat16)
    mask = torch.zeros(len(ids), width, dtype=torch.bool)
    for start in range(0, len(ids), batch_size):
        part = ids[start:start + batch_size]
        w = max(len(x) for x in part)
        input_ids = torch.full((len(part), w), pad, dtype=torch.long)
        m = torch.zeros((len(part), w), dtype=torch.long)
        for r, x in enumerate(part):
            input_ids[r, :len(x)], m[r, :len(x)] = torch.tensor(x), 1
        out = base(input_ids=input_ids, attention_mask=m, output_hidden_states=True)
        states[start:start + len(part), :w] = out.hidden_states[depth].to(torch.bfloat16)
        mask[start:start + len(part), :w] = m.bool()
    return states, mask


@torch.no_grad()
def hidden_rms(base, tokenizer, texts: Sequence[str], depth: int, max_tokens: int = 32) -> torch.Tensor:
    """Per-dimension RMS [d] of ``base``'s hidden states at ``depth`` (0 = the token embeddings) over
    the real tokens of ``texts``: the scale, outlier dimensions included, that blocks taken from that
    depth were trained to read (ours; see :class:`HLLM`'s user input)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_tokens, padding=True, return_tensors="pt")
    states = base(**enc, output_hidden_states=True).hidden_states[depth]
    real = enc["attention_mask"].bool()
    return states[real].float().pow(2).mean(0).sqrt()


# -- the model -------------------------------------------------------------------------------------
class HLLM(FallbackModel):
    """Item tower + user model, scored by cosine x a learned scale (or dot) over the whole catalog."""

    name = "hllm"

    def __init__(self, cfg: HLLMConfig, num_items: int, text_vectors: np.ndarray | None = None,
                 tower: BlockStack | None = None, token_states: tuple[torch.Tensor, torch.Tensor] | None = None,
                 user_blocks: BlockStack | None = None, user_scale: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_items = num_items
        d = cfg.hidden
        if cfg.item_tower == "frozen":
            if text_vectors is None or len(text_vectors) != num_items:
                raise ValueError(f"the frozen item tower needs one text vector per item ({num_items})")
            table = torch.zeros(num_items + 1, text_vectors.shape[1])
            table[1:] = torch.from_numpy(prepare_llm_embeddings(text_vectors))
            self.register_buffer("text", table)
            dim = table.shape[1]
            self.item_mlp = nn.Sequential(nn.Linear(dim, 2 * d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))
        else:
            if tower is None:
                raise ValueError("the tuned item tower needs the encoder's top blocks")
            self.tower = tower
            self.item_proj = nn.Linear(tower.config.hidden_size, d)
            # the tower's output for every item, kept with the weights: what evaluation and serving read
            self.register_buffer("item_cache", torch.zeros(num_items + 1, d))
            self._tokens = token_states  # (states, mask), not saved: only training re-encodes items
            self._stale = True
        if cfg.item_ids:
            self.ids = nn.Embedding(num_items + 1, d, padding_idx=0)
            nn.init.normal_(self.ids.weight, std=0.02)
            with torch.no_grad():
                self.ids.weight[0] = 0
        self.in_dropout = nn.Dropout(cfg.dropout)
        if cfg.user_model == "llm":
            if user_blocks is None:
                raise ValueError("the LLM user model needs its blocks")
            self.user = user_blocks
            width = user_blocks.config.hidden_size
            # Item vectors enter the blocks at the scale of the LM's own hidden states at that depth:
            # pretrained blocks add outputs of norm ~40 with a few massive dimensions, which drown
            # unit-scale inputs (every user state then points the same way); an RMS norm whose gain
            # starts at the per-dimension RMS of real hidden states there (``user_scale``; ones for
            # random blocks) gives them inputs shaped like what they were trained on (ours).
            self.user_in = nn.Sequential(nn.Linear(d, width), nn.RMSNorm(width, eps=1e-6))
            if user_scale is not None:
                with torch.no_grad():
                    self.user_in[1].weight.copy_(user_scale)
            self.user_out = nn.Linear(width, d)
            if cfg.user_lora_r:
                _add_lora(self.user, cfg.user_lora_r)
        else:
            self.pos = nn.Embedding(cfg.max_len + 1, d, padding_idx=0)
            self.user = SequenceEncoder(d, cfg.user_layers, cfg.user_heads, cfg.dropout, 0, "gelu", "sasrec")
        if cfg.score == "cosine":
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._bf16 = inference_dtype(cfg.precision) == "bfloat16"

    def _blocks(self, stack: nn.Module, *args) -> torch.Tensor:
        """Run transformer blocks, under bf16 autocast where ``precision`` says so (float32 out)."""
        device = args[0].device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self._bf16):
            return stack(*args).float()

    # -- items ------------------------------------------------------------------------------------
    def _tower(self, rows: torch.Tensor) -> torch.Tensor:
        """Item-tower output for shifted rows (1..N) [R] → [R, hidden]."""
        states, mask = self._tokens  # kept on the CPU (the catalog's token states); a batch moves
        device = self.item_proj.weight.device
        idx = (rows - 1).to(states.device)
        x = states[idx].to(device).float()
        m = mask[idx].to(device)
        t = m.shape[1]
        allowed = m[:, None, :].expand(-1, t, -1)
        if self.tower.kind == "llama":  # a causal LM's blocks read only earlier tokens
            allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=device).tril()
        allowed = allowed | torch.eye(t, dtype=torch.bool, device=device)
        h = self._blocks(self.tower, x, allowed)
        w = m.unsqueeze(-1).to(h.dtype)
        return self.item_proj((h * w).sum(1) / w.sum(1).clamp(min=1))

    def train(self, mode: bool = True) -> HLLM:
        """The item tower never drops out: the catalog vectors of a step and those evaluation and
        serving read come from the same deterministic tower (the cache equals a training step's)."""
        super().train(mode)
        if self.cfg.item_tower == "tuned":
            self.tower.eval()
        return self

    def _catalog(self, batch: int = 512) -> torch.Tensor:
        """The tower's output for every item [N+1, hidden] (row 0 = padding), ``batch`` items at a time."""
        device = self.item_proj.weight.device
        rows = torch.arange(1, self.num_items + 1, device=device)
        return torch.cat([torch.zeros(1, self.cfg.hidden, device=device)] +
                         [self._tower(rows[i:i + batch]) for i in range(0, self.num_items, batch)])

    @torch.no_grad()
    def refresh_items(self) -> None:
        """Recompute every item's tower output into ``item_cache`` (no gradient; the tower never drops out)."""
        if self.cfg.item_tower != "tuned" or self._tokens is None:
            return
        self.item_cache.copy_(self._catalog())
        self._stale = False

    def _text_table(self, grad: bool = False) -> torch.Tensor:
        """The text part of every item's vector [N+1, hidden]; ``grad``: the tuned tower encodes the
        whole catalog with gradients (a training step), else its cache serves (refreshed if stale)."""
        if self.cfg.item_tower == "frozen":
            out = self.item_mlp(self.text)
            return out * (torch.arange(out.shape[0], device=out.device) > 0)[:, None]
        if self._tokens is None or not grad:
            if self._stale and self._tokens is not None:
                self.refresh_items()
            return self.item_cache
        out = self._catalog()
        with torch.no_grad():
            self.item_cache.copy_(out.detach())
        return out

    def item_tables(self, grad: bool = False) -> dict[str, torch.Tensor]:
        """{"item": [N+1, hidden]} (row 0 = padding); cosine scoring: unit rows."""
        table = self._text_table(grad)
        if self.cfg.item_ids:
            table = table + self.ids.weight
        if self.cfg.score == "cosine":
            table = F.normalize(table, dim=-1) * (torch.arange(table.shape[0], device=table.device) > 0)[:, None]
        return {"item": table}

    def output_table(self, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        tables = tables if tables is not None else self.item_tables()
        return tables["item"][1:]

    # -- users ------------------------------------------------------------------------------------
    def encode(self, seqs: torch.Tensor, tables: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Left-padded shifted rows [B, L] → user states [B, L, hidden] (scaled unit vectors for cosine)."""
        tables = tables if tables is not None else self.item_tables()
        allowed, keep = attention_mask(seqs)
        real = seqs > 0
        positions = torch.cumsum(real.long(), 1) * real  # 1..len over the history, 0 on padding
        x = self.in_dropout(F.embedding(seqs, tables["item"])) * keep
        if self.cfg.user_model == "llm":
            h = self.user_out(self._blocks(self.user, self.user_in(x), allowed, (positions - 1).clamp(min=0)))
        else:
            h = self.user(x * math.sqrt(self.cfg.hidden) + self.pos(positions.clamp(max=self.cfg.max_len)), allowed, keep)
        h = h * keep
        if self.cfg.score == "cosine":
            h = F.normalize(h, dim=-1) * self.logit_scale.exp().clamp(max=100.0)
        return h

    def loss(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
             teacher: torch.Tensor | None = None,
             ranking: RankingLoss | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The configured ranking loss at every real position; the tuned tower re-encodes the batch's
        catalog with gradients in every step."""
        if ranking is None:
            raise ValueError("HLLM trains with a configured ranking loss (train.loss)")
        tuned = self.cfg.item_tower == "tuned" and self._tokens is not None
        if tuned:
            self._stale = True  # the step changes the tower: evaluation re-encodes the catalog
        tables = self.item_tables(grad=tuned)
        states = self.encode(seqs, tables)
        value = ranking(states, pos, tables["item"], neg)
        return value, {"rank": float(value.detach())}

    def param_groups(self, lr: float) -> list[dict]:
        """The pretrained blocks (and their LoRA adapters) at ``lm_lr``, everything else at ``lr``."""
        blocks = {id(p) for m in (getattr(self, "tower", None), self.user if self.cfg.user_model == "llm" else None)
                  if m is not None for p in m.parameters()}
        slow = [p for p in self.parameters() if id(p) in blocks and p.requires_grad]
        fast = [p for p in self.parameters() if id(p) not in blocks and p.requires_grad]
        return [g for g in ({"params": fast, "lr": lr}, {"params": slow, "lr": self.cfg.lm_lr}) if g["params"]]

    def saved_shapes(self) -> dict:
        out: dict = {"llm_dim": int(self.text.shape[1]) if self.cfg.item_tower == "frozen" else 0}
        if self.cfg.item_tower == "tuned":
            out["tower_config"] = self.tower.config.to_dict()
        if self.cfg.user_model == "llm":
            out["user_config"] = self.user.config.to_dict()
        return out


def _add_lora(stack: BlockStack, rank: int) -> None:
    """LoRA (peft) on every linear map of the blocks; the blocks' own weights frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    for p in stack.parameters():
        p.requires_grad_(False)
    targets = sorted({name.rsplit(".", 1)[-1] for name, m in stack.blocks.named_modules() if isinstance(m, nn.Linear)})
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0),
                            stack.blocks)


def build_hllm(cfg: HLLMConfig, num_items: int, text_vectors: np.ndarray | None, item_texts: Sequence[str] | None,
               encoder_spec: str) -> HLLM:
    """An HLLM for training: loads the user LM's blocks (pretrained or not; the scale of its hidden
    states measured on the first 256 item texts) and, for the tuned item tower, the text encoder's
    top blocks and the token states of its lower ones for every item."""
    tower = tokens = user = scale = None
    if cfg.item_tower == "tuned":
        if item_texts is None:
            raise ValueError("the tuned item tower needs the items' texts")
        base, tokenizer = load_base(encoder_spec)
        tokens = lower_token_states(base, tokenizer, item_texts, cfg.item_layers, cfg.item_max_tokens)
        tower = lm_blocks(base, "top", cfg.item_layers)
        del base
    if cfg.user_model == "llm":
        base, tokenizer = load_base(cfg.user_llm)
        if cfg.user_init == "pretrained":
            user = lm_blocks(base, cfg.user_layers_from, cfg.user_layers)
            depth = base.config.num_hidden_layers - cfg.user_layers if cfg.user_layers_from == "top" else 0
            scale = hidden_rms(base, tokenizer, (item_texts or [])[:256] or ["an item"], depth)
        else:
            user = empty_blocks(base.config.to_dict(), cfg.user_layers)
        del base
    return HLLM(cfg, num_items, text_vectors, tower, tokens, user, scale)


def load_hllm(config: dict, num_items: int, shapes: dict) -> HLLM:
    """An HLLM of the saved sizes for ``load_state_dict`` (serving: no encoder, no token states)."""
    cfg = HLLMConfig(**config)
    dim = shapes.get("llm_dim", 0)
    vectors = np.zeros((num_items, dim), dtype=np.float32) if cfg.item_tower == "frozen" else None
    tower = empty_blocks(shapes["tower_config"], cfg.item_layers) if cfg.item_tower == "tuned" else None
    user = empty_blocks(shapes["user_config"], cfg.user_layers) if cfg.user_model == "llm" else None
    return HLLM(cfg, num_items, vectors, tower, None, user)
