"""JSON Lines reading with errors that name the file and line (one object per line)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from genrec.errors import DataError


def read_json_lines(path: str | Path, what: str = "file", allow_cut_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; a DataError naming the line on bad JSON,
    a non-object line, or text that is not UTF-8. ``allow_cut_tail``: a last line without its
    newline that does not parse (an append cut by a kill) is skipped instead."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{what} not found")
    if path.is_dir():
        raise DataError(path, f"{what} expected, found a folder")
    n = 0
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    if allow_cut_tail and not line.endswith("\n"):
                        return
                    hint = " (a JSON array? write one object per line: JSON Lines)" \
                        if line.lstrip().startswith("[") else ""
                    raise DataError(path, f"invalid or truncated JSON: {e.msg}{hint}", line=n) from None
                if not isinstance(row, dict):
                    raise DataError(path, "expected a JSON object per line", line=n)
                yield n, row
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}", line=n + 1) from None
