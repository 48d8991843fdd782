"""Shared fixtures: where the shared data lives, a tokenizer, small catalogs."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENREC_SHARED_DATA", REPO.parent / "shared" / "data"))

# Tests must not depend on a network; the Hub is unreachable on our machines anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@functools.cache
def load_script(rel: str) -> types.ModuleType:
    """A user-facing script (``"eval/reproduce.py"``) as a module, loaded once per test session.

    Scripts are files, not package modules. The module is registered in ``sys.modules`` before
    it runs, because dataclasses resolve their annotations through it; the scripts only define
    things unless run as ``__main__``."""
    path = REPO / rel
    name = "script_" + rel.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared CPU: one thread is fastest and leaves the other core free (on a busy
    2-core machine OpenMP spin-waits made the default two threads ~10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_llama(tokenizer, hidden: int = 32, heads: int = 4, seed: int = 0, **config):
    """A randomly initialised 2-layer Llama (``seed``) over the SmolLM2 tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=heads, **config)
    return LlamaForCausalLM(cfg)


def save_tiny_llama(path: Path, tokenizer, hidden: int = 32, heads: int = 4, **config) -> str:
    """:func:`tiny_llama` (seed 0) with the tokenizer, saved as a model folder."""
    model = tiny_llama(tokenizer, hidden, heads, pad_token_id=tokenizer.pad_token_id, **config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def titles_template(folder: Path):
    """A template whose item line is the bare title ("Bought:" history, "Next:" suffix), written to ``folder``."""
    from genrec.prompting import PromptTemplate

    path = folder / "titles.yaml"
    path.write_text('name: titles\nattributes:\n  - {field: title, prefix: ""}\nhistory_label: "Bought:\\n"\n'
                    'item_label: "- "\nsuffix: "Next:\\n"\nterminator: "\\n"\n', encoding="utf-8")
    return PromptTemplate.load(path)


def kill_after_first_epoch(proc, last: Path, timeout: float = 300) -> None:
    """SIGKILL a training subprocess (no clean-up) once its resumable ``last`` checkpoint holds an
    epoch >= 1; fails when the run ended first (give it more epochs)."""
    import signal
    import time

    import torch

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                if torch.load(last, weights_only=False)["epoch"] >= 1:
                    break
            except Exception:  # caught mid-rename: try again
                pass
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert killed, "the run ended before it could be killed; give it more epochs"
