"""The module the Trainer optimises: a causal LM (LoRA-adapted or whole) plus the CALRec loss in ``forward``.

Keeping both passes (joint sequence, target alone) inside one ``forward`` means DDP under
``accelerate launch`` sees a single forward per step, and the optional projection heads are
ordinary trainable parameters of the same module.

Files: with LoRA the usual PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``,
loads onto the base model anywhere); with full fine-tuning a plain model folder
(``config.json`` + ``model.safetensors``, what vLLM and ``from_pretrained`` read). Projection
heads and the negatives queue, when on, go beside the adapter as ``calrec_heads.safetensors``
and, in a model folder, into ``calrec_heads/`` (vLLM loads every ``*.safetensors`` at a
model folder's top level) — only training reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from genrec.training.config import LossConfig
from genrec.training.losses import combine, info_nce, last_prompt_state, mean_pool, nig_loss

HEADS_FILE = "calrec_heads.safetensors"
HEADS_SUBDIR = "calrec_heads"
HEADS_SETTINGS = "calrec_heads.json"
ADAPTER_FILE = "adapter_model.safetensors"
MODEL_FILE = "model.safetensors"


def heads_file(directory: Path) -> Path:
    """Where the heads of a saved adapter or model folder are (or go)."""
    return directory / HEADS_FILE if (directory / ADAPTER_FILE).exists() else directory / HEADS_SUBDIR / HEADS_FILE


def heads_settings_file(directory: Path) -> Path:
    """Beside the heads: how v_U is pooled, the heads' size and L_UT's τ (``calrec_heads.json``)."""
    return heads_file(directory).with_name(HEADS_SETTINGS)


class NegativesQueue(nn.Module):
    """A FIFO of the last ``size`` unit-length user-side vectors (no gradient), one per objective.

    Buffers, so they travel with the heads file and a resumed run continues with the same queue.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("tt", torch.zeros(size, dim))
        self.register_buffer("ut", torch.zeros(size, dim))
        self.register_buffer("filled", torch.zeros(2, dtype=torch.long))  # valid rows of tt, ut

    def get(self, name: str) -> torch.Tensor:
        i = 0 if name == "tt" else 1
        return getattr(self, name)[: int(self.filled[i])]

    @torch.no_grad()
    def push(self, name: str, vectors: torch.Tensor) -> None:
        """Newest first: ``vectors`` go to the front, the oldest fall off the end."""
        i = 0 if name == "tt" else 1
        buf = getattr(self, name)
        v = torch.nn.functional.normalize(vectors.detach().float(), dim=-1, eps=1e-8)[: self.size]
        buf.copy_(torch.cat([v, buf[: self.size - v.shape[0]]], dim=0))
        self.filled[i] = min(self.size, int(self.filled[i]) + v.shape[0])


class ProjectionHeads(nn.Module):
    """One linear head per embedding: v_U, v_T|U and v_T (SPEC.md §1, optional)."""

    def __init__(self, hidden: int, dim: int) -> None:
        super().__init__()
        self.user = nn.Linear(hidden, dim)
        self.target_in_context = nn.Linear(hidden, dim)
        self.target = nn.Linear(hidden, dim)


class CALRecModel(nn.Module):
    """``forward(batch) -> {"loss", "nig", "tt", "ut"}`` with L = (1-α-β)·L_NIG + α·L_TT + β·L_UT."""

    def __init__(self, model: nn.Module, loss: LossConfig) -> None:
        super().__init__()
        self.model = model
        self.loss_cfg = loss
        self.config = model.config
        self.is_lora = hasattr(model, "get_base_model")
        hidden = model.config.hidden_size
        dim = (loss.projection_dim or hidden) if loss.projection_heads else hidden
        self.heads = ProjectionHeads(hidden, dim).float() if loss.projection_heads else None
        self.queue = NegativesQueue(loss.queue_size, dim) if loss.queue_size and loss.contrastive else None

    # -- forward -------------------------------------------------------------------------
    def _decoder(self) -> nn.Module:
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.get_decoder()

    def forward(self, input_ids, attention_mask, position_ids, labels, history_mask, target_mask,
                t_input_ids=None, t_attention_mask=None, t_position_ids=None, t_target_mask=None,
                **_: object) -> dict[str, torch.Tensor | None]:
        cfg = self.loss_cfg
        contrastive = cfg.contrastive
        # Left padding puts every target at the end: logits are needed only for the last K positions.
        keep = min(int(target_mask.sum(dim=1).max()) + 1, input_ids.shape[1])
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         output_hidden_states=contrastive, logits_to_keep=keep, use_cache=False)
        nig = nig_loss(out.logits, labels[:, -keep:])
        tt = ut = None
        if contrastive:
            v_u, v_tu, v_t = self._vectors(out.hidden_states[-1], history_mask, target_mask,
                                           t_input_ids, t_attention_mask, t_position_ids, t_target_mask)
            tau_tt, tau_ut = cfg.temperatures
            # The queue only in training: validation losses stay in-batch, comparable with ln(batch).
            queue = self.queue if self.training else None
            queued = {k: queue.get(k) if queue is not None and k in cfg.queue_for else None for k in ("tt", "ut")}
            tt = info_nce(v_tu, v_t, tau_tt, queued["tt"]) if cfg.alpha != 0 else None
            ut = info_nce(v_u, v_t, tau_ut, queued["ut"]) if cfg.beta != 0 else None
            if queue is not None:
                queue.push("tt", v_tu)
                queue.push("ut", v_u)
        loss = combine(nig, tt, ut, cfg.alpha, cfg.beta)
        return {"loss": loss, "nig": nig.detach(),
                "tt": None if tt is None else tt.detach(), "ut": None if ut is None else ut.detach()}

    def _vectors(self, h, history_mask, target_mask, t_input_ids, t_attention_mask, t_position_ids,
                 t_target_mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v_U, v_T|U, v_T) after the heads, from the joint sequence's last hidden states ``h``
        and a pass over the target alone."""
        if t_input_ids is None:
            raise ValueError("contrastive loss needs the target-alone sequences (collator with_target_alone)")
        v_tu = mean_pool(h, target_mask)
        if self.heads is not None:
            v_tu = self.heads.target_in_context(v_tu)
        return (self.user_vectors(h, history_mask, target_mask), v_tu,
                self.target_vectors(t_input_ids, t_attention_mask, t_position_ids, t_target_mask))

    def user_vectors(self, h: torch.Tensor, history_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """v_U (after its head) from a sequence's last hidden states: the history mean or the
        last prompt state (``loss.user_pooling``). A prompt without a target works the same,
        its last position being the last prompt token (left padding)."""
        v_u = last_prompt_state(h, target_mask) if self.loss_cfg.user_pooling == "last" else mean_pool(h, history_mask)
        return self.heads.user(v_u) if self.heads is not None else v_u

    def target_vectors(self, t_input_ids, t_attention_mask, t_position_ids, t_target_mask) -> torch.Tensor:
        """v_T (after its head): the mean state of a pass over the target text alone."""
        v_t = mean_pool(self.hidden_states(t_input_ids, t_attention_mask, t_position_ids), t_target_mask)
        return self.heads.target(v_t) if self.heads is not None else v_t

    @torch.no_grad()
    def embed(self, input_ids, attention_mask, position_ids, history_mask, target_mask, t_input_ids=None,
              t_attention_mask=None, t_position_ids=None, t_target_mask=None,
              **_: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v_U, v_T|U, v_T) of a collated batch, as ``forward`` feeds them to the contrastive losses."""
        h = self.hidden_states(input_ids, attention_mask, position_ids)
        return self._vectors(h, history_mask, target_mask, t_input_ids, t_attention_mask, t_position_ids,
                             t_target_mask)

    def hidden_states(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        """The decoder's last hidden states (no LM head: embedding needs no logits)."""
        return self._decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=False).last_hidden_state

    # -- files ---------------------------------------------------------------------------
    def _extras(self) -> dict[str, torch.Tensor]:
        out = {f"heads.{k}": v for k, v in self.heads.state_dict().items()} if self.heads is not None else {}
        if self.queue is not None:
            out.update({f"queue.{k}": v for k, v in self.queue.state_dict().items()})
        return out

    def save(self, directory: str | Path) -> None:
        """The adapter (LoRA) or the whole model (full) into ``directory``, plus heads and queue when on."""
        from safetensors.torch import save_file

        directory = Path(directory)
        self.model.save_pretrained(str(directory))
        extras = self._extras()
        if extras:
            path = heads_file(directory)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in extras.items()}, str(path))
        if self.heads is not None:  # what inference needs to read v_U and v_T as training did
            cfg = self.loss_cfg
            heads_settings_file(directory).write_text(json.dumps(
                {"user_pooling": cfg.user_pooling, "projection_dim": self.heads.user.out_features,
                 "tau_ut": cfg.temperatures[1]}), encoding="utf-8")

    def load_weights(self, directory: str | Path) -> None:
        """Weights of a checkpoint, adapter or model folder (+ heads and queue) into this model."""
        from safetensors.torch import load_file

        directory = Path(directory)
        if self.is_lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, load_file(str(directory / ADAPTER_FILE)))
        else:
            state = load_file(str(directory / MODEL_FILE))
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            # Tied output embeddings are saved once (under the input embedding's name).
            tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
            if set(missing) - tied or unexpected:
                raise ValueError(f"{directory / MODEL_FILE}: does not match the model "
                                 f"(missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]})")
        self.load_heads(directory)

    def load_heads(self, directory: str | Path) -> bool:
        """Heads (and queue) saved in ``directory``, if this model has them and the file exists."""
        from safetensors.torch import load_file

        path = heads_file(Path(directory))
        if not path.exists() or (self.heads is None and self.queue is None):
            return False
        state = load_file(str(path))
        if not any(k.startswith("heads.") for k in state):  # files written before the queue: heads only
            state = {f"heads.{k}": v for k, v in state.items()}
        if self.heads is not None:
            self.heads.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("heads.")})
        queued = {k[6:]: v for k, v in state.items() if k.startswith("queue.")}
        if self.queue is not None and queued and queued["tt"].shape == self.queue.tt.shape:
            self.queue.load_state_dict(queued)
        return True
