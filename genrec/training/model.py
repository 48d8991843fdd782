"""The module the Trainer optimises: a PEFT (LoRA) causal LM plus the CALRec loss in ``forward``.

Keeping both passes (joint sequence, target alone) inside one ``forward`` means DDP under
``accelerate launch`` sees a single forward per step, and the optional projection heads are
ordinary trainable parameters of the same module.

Files: the adapter is the usual PEFT folder (``adapter_config.json`` +
``adapter_model.safetensors``, loads onto the base model anywhere); projection heads, when
on, go beside it as ``calrec_heads.safetensors`` — only training reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genrec.training.config import LossConfig
from genrec.training.losses import combine, info_nce, mean_pool, nig_loss

HEADS_FILE = "calrec_heads.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"


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
        hidden = model.config.hidden_size
        self.heads = (ProjectionHeads(hidden, loss.projection_dim or hidden).float()
                      if loss.projection_heads else None)

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
            if t_input_ids is None:
                raise ValueError("contrastive loss needs the target-alone sequences (collator with_target_alone)")
            h = out.hidden_states[-1]
            v_u = mean_pool(h, history_mask)
            v_tu = mean_pool(h, target_mask)
            h_t = self._decoder()(input_ids=t_input_ids, attention_mask=t_attention_mask,
                                  position_ids=t_position_ids, use_cache=False).last_hidden_state
            v_t = mean_pool(h_t, t_target_mask)
            if self.heads is not None:
                v_u, v_tu, v_t = self.heads.user(v_u), self.heads.target_in_context(v_tu), self.heads.target(v_t)
            tt = info_nce(v_tu, v_t, cfg.tau) if cfg.alpha != 0 else None
            ut = info_nce(v_u, v_t, cfg.tau) if cfg.beta != 0 else None
        loss = combine(nig, tt, ut, cfg.alpha, cfg.beta)
        return {"loss": loss, "nig": nig.detach(),
                "tt": None if tt is None else tt.detach(), "ut": None if ut is None else ut.detach()}

    # -- files ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """The PEFT adapter (+ heads file when heads are on) into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        self.model.save_pretrained(str(directory))
        if self.heads is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()},
                      str(directory / HEADS_FILE))

    def load_weights(self, directory: str | Path) -> None:
        """Adapter (+ heads) weights of a checkpoint or adapter folder into this model."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(directory)
        set_peft_model_state_dict(self.model, load_file(str(directory / ADAPTER_FILE)))
        self.load_heads(directory)

    def load_heads(self, directory: str | Path) -> bool:
        from safetensors.torch import load_file

        path = Path(directory) / HEADS_FILE
        if self.heads is None or not path.exists():
            return False
        self.heads.load_state_dict(load_file(str(path)))
        return True
