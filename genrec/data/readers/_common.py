"""Helpers shared by the readers: clean text fields, parse ids, resolve unknown items."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.errors import DataError

_MISSING = {"", ".", "nan", "none", "null", "n/a"}
_TAG = re.compile(r"<[^>]+>")


def clean(value: Any) -> str | None:
    """A text attribute, or ``None`` when the source has nothing real (never "nan" / "None")."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if v is not None)
    text = _TAG.sub(" ", str(value))
    text = " ".join(text.split())
    return None if text.lower() in _MISSING else text


def split_path(value: Any, sep: str = ",") -> tuple[str, ...]:
    """A category path from a list or a separated string, empty parts dropped."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):  # [[path], [path]]: the first path
            value = value[0]
        parts = [clean(v) for v in value]
    else:
        parts = [clean(v) for v in str(value).split(sep)]
    return tuple(p for p in parts if p)


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(path, f"{what} not found")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(path, f"{what} is empty")
    return path


def find_one(folder: Path, pattern: str, what: str) -> Path:
    """The single file in ``folder`` matching ``pattern``; a clear error when none or several."""
    if folder.is_file():
        return require_file(folder, what)
    if not folder.exists():
        raise DataError(folder, "dataset folder not found")
    matches = sorted(folder.glob(pattern))
    if not matches:
        raise DataError(folder, f"no {what} ({pattern}) in this folder")
    if len(matches) > 1:
        raise DataError(folder, f"several {what} files match {pattern}: {[m.name for m in matches]}; "
                                "pass the file itself")
    return require_file(matches[0], what)


def load_json(path: Path) -> Any:
    require_file(path, "JSON file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid or truncated JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None


def parse_int(token: str, path: Path, line: int, what: str = "id") -> int:
    try:
        return int(token)
    except ValueError:
        raise DataError(path, f"{what} {token!r} is not an integer", line=line) from None


class SequenceBuilder:
    """Collects (user, item id, source line) rows and maps item ids to catalog indices.

    Unknown item ids either raise (naming file and line) or are dropped and counted, so
    no interaction disappears silently.
    """

    def __init__(self, catalog: Catalog, on_unknown_item: str = "error") -> None:
        if on_unknown_item not in ("error", "drop"):
            raise DataError(None, f"on_unknown_item must be 'error' or 'drop', got {on_unknown_item!r}")
        self.catalog = catalog
        self.on_unknown_item = on_unknown_item
        self.sequences: dict[str, list[int]] = {}
        self.dropped = 0

    def add(self, user: str, item_id: str, path: Path, line: int | None) -> None:
        index = self.catalog.get_index(item_id)
        if index is None:
            if self.on_unknown_item == "error":
                raise DataError(path, f"item id {item_id!r} is not in the catalog "
                                      "(use on_unknown_item='drop' to skip and count such rows)", line=line)
            self.dropped += 1
            self.sequences.setdefault(user, [])
            return
        self.sequences.setdefault(user, []).append(index)

    def build(self, name: str) -> SequenceDataset:
        sequences = {u: s for u, s in self.sequences.items() if s}
        dropped = {}
        if self.dropped:
            dropped["unknown_item"] = self.dropped
        if len(sequences) < len(self.sequences):
            dropped["users_left_empty"] = len(self.sequences) - len(sequences)
        return SequenceDataset(self.catalog, sequences, name=name, dropped=dropped)


def catalog_from_ids(ids: list[str], titles: dict[str, Any] | None = None,
                     categories: dict[str, Any] | None = None, extra: dict[str, dict] | None = None) -> Catalog:
    """A catalog from id lists and optional id→title / id→category maps."""
    titles = titles or {}
    categories = categories or {}
    extra = extra or {}
    items = []
    for i in ids:
        items.append(Item(item_id=i, title=clean(titles.get(i)) or "", categories=split_path(categories.get(i)),
                          extra=tuple(sorted((extra.get(i) or {}).items()))))
    return Catalog(items)
