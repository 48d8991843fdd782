"""Shared fixtures: where the shared data lives, a tokenizer, small catalogs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENREC_SHARED_DATA", REPO.parent / "shared" / "data"))

# Tests must not depend on a network; the Hub is unreachable on our machines anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"shared data folder {path} not present")
    return path


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted built-in model folder (converted once per cache)."""
    from genrec.model_store import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)
