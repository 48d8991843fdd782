"""Where genrec keeps converted models and other reusable artefacts."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$GENREC_CACHE`` or ``~/.cache/genrec``; created on first use."""
    path = Path(os.environ.get("GENREC_CACHE") or Path.home() / ".cache" / "genrec")
    path.mkdir(parents=True, exist_ok=True)
    return path
