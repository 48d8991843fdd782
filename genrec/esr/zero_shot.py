"""Zero-shot on an unseen shop (issue #31): train on other shops, rank a new shop's whole catalog.

A text model of the family ranks items by what their text says, so the trained parts (adapters,
sequence encoder, gate) can be kept while the item text table is swapped for the new shop's:
:func:`transfer` does that swap. Nothing of the new shop is used but its item texts (encoded by
the same frozen encoder) and, at test time, each test user's history; no interaction of the new
shop reaches training or model selection (early stopping reads the source shops' validation).

Which models can move, and what moves:

* ``unisrec`` with ``stage=inductive``: the MoE adapter and encoder over the new text table.
* ``llmesr`` with ``esr.views=semantic`` (LLM-ESR's semantic view alone: the adapter and the
  SASRec encoder; the collaborative view's ID rows mean nothing in another shop).
* ``alpharec``: the MLP over the new text table with an empty graph, so an item's vector is the
  MLP of its text (the paper's zero-shot use) and a user's the fold-in of its history over items
  of degree 0 (:mod:`genrec.esr.alpharec`).

A model with ID rows is refused with the setting that removes them. Text statistics the model
takes of its catalog (LLM-ESR's and AlphaRec's centring of the vectors) are taken of the new
shop's texts, as the model would on any catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from genrec.data.source import DatasetSource
from genrec.errors import ConfigError
from genrec.esr.cold_protocol import id_table_name
from genrec.esr.family import FallbackModel
from genrec.esr.llmesr import prepare_llm_embeddings
from genrec.esr.unisrec import text_table

# model name -> its frozen item text table (padded, row i+1 = catalog item i)
TEXT_TABLES = {"unisrec": "e_llm", "alpharec": "e_llm", "llmesr": "e_se"}
WITHOUT_IDS = {"unisrec": "unisrec.stage=inductive", "llmesr": "esr.views=semantic"}


@dataclass
class TransferConfig:
    """``sources``: the shops a model is trained on; the run's ``dataset`` is then the shop it is
    tested on, zero-shot. Empty: the normal protocol (train and test on ``dataset``)."""

    sources: list[DatasetSource] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return bool(self.sources)


def check_transferable(model: FallbackModel) -> None:
    """A ConfigError unless ``model`` can rank another shop's catalog from its text alone."""
    if model.name not in TEXT_TABLES or getattr(model, TEXT_TABLES[model.name], None) is None:
        raise ConfigError(f"zero-shot transfer needs a text model ({', '.join(TEXT_TABLES)}); "
                          f"{model.name!r} ranks items by what it learned of their ids")
    if id_table_name(model) is not None:
        raise ConfigError(f"{model.name} is configured with ID rows, which mean nothing in another shop; "
                          f"set {WITHOUT_IDS[model.name]} for zero-shot transfer")


@torch.no_grad()
def transfer(model: FallbackModel, vectors: np.ndarray) -> FallbackModel:
    """``model`` (changed in place and returned) ranking the catalog whose item text vectors are
    ``vectors`` [N, d]: the text table swapped, everything trained kept."""
    check_transferable(model)
    name = TEXT_TABLES[model.name]
    old = getattr(model, name)
    if np.shape(vectors)[1] != old.shape[1]:
        raise ConfigError(f"the new shop's item vectors have {np.shape(vectors)[1]} dims, the model's "
                          f"{old.shape[1]}: encode both with the same encoder")
    x = prepare_llm_embeddings(vectors) if getattr(model.cfg, "normalize_llm", False) else vectors
    model.register_buffer(name, text_table(x).to(old.device, old.dtype))
    model.num_items = len(vectors)
    if model.name == "alpharec":  # no edge of the training graph touches the new shop
        model.edges = torch.zeros((2, 0), dtype=torch.long, device=old.device)
        model.num_users = 0
    return model
