"""Resumable logs keyed to what they measured: a log written under another setting (dataset, split,
masking, sampling) must never be read back as this run's.

The key is a small JSON file beside the log(s); the first run writes it, every later run must match
it, and logs without one (written before logs were keyed) are refused, since what they measured is
unknown.
"""

from __future__ import annotations

import json
from pathlib import Path

from genrec.errors import ConfigError


def check_settings_file(key_path: Path, key: dict, logs: list[str], where: str, start_over: str) -> None:
    """Refuse ``logs`` (the non-empty log files ``key_path`` keys) made under a key other than
    ``key``, or kept without a key; write ``key`` when there is nothing yet. ``where`` names the
    logs in the error, ``start_over`` says what to delete to begin again."""
    key = json.loads(json.dumps(key))  # as it reads back (tuples become lists)
    if key_path.exists():
        saved = json.loads(key_path.read_text(encoding="utf-8"))
        if saved != key:
            differ = sorted(k for k in saved.keys() | key.keys() if saved.get(k) != key.get(k))
            raise ConfigError(f"{where}: logged under other settings ({', '.join(differ)}: "
                              f"{ {k: saved.get(k) for k in differ} } in {key_path}, now "
                              f"{ {k: key.get(k) for k in differ} }); use another output_dir, or delete "
                              f"{start_over} to start over")
    elif logs:
        raise ConfigError(f"{where}: log(s) {', '.join(logs)} without their settings file {key_path.name}, so what "
                          f"they measured (dataset, split, masking, sampling) is unknown; use another output_dir, "
                          f"or delete them to start over")
    else:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.write_text(json.dumps(key) + "\n", encoding="utf-8")
