"""Helpers shared by the readers: clean text fields, parse ids, resolve unknown items."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset
from genrec.errors import ConfigError, DataError

_MISSING = {"", ".", "nan", "none", "null", "n/a", "na"}
_TAG = re.compile(r"<[^>]*>")

UNKNOWN_ITEM_CHOICES = ("error", "drop")


def clean(value: Any) -> str | None:
    """A text attribute, or ``None`` when the source has nothing real (never "nan" / "None").

    Lists (Amazon 2018 descriptions) are joined with spaces; HTML tags are removed and
    entities decoded (``&amp;`` -> ``&``); whitespace runs collapse to one space.
    """
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas-made files
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if v is not None)
    text = str(value)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    text = " ".join(text.split())
    return None if text.lower() in _MISSING else text


def split_path(value: Any, sep: str = ",") -> tuple[str, ...]:
    """A category path from a list or a separated string, empty parts dropped.

    ``[[path], [path]]`` (Amazon 2014 / TransRec maps) gives the first path.
    """
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            value = value[0]
        parts = [clean(v) for v in value]
    else:
        parts = [clean(v) for v in str(value).split(sep)]
    return tuple(p for p in parts if p)


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a non-empty file; a DataError naming it otherwise."""
    if not path.exists():
        raise DataError(path, f"{what} not found")
    if path.is_dir():
        raise DataError(path, f"{what} expected, found a folder")
    if path.stat().st_size == 0:
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
        present = ", ".join(sorted(p.name for p in folder.iterdir())[:20]) or "nothing"
        raise DataError(folder, f"no {what} ({pattern}) in this folder; it holds: {present}")
    if len(matches) > 1:
        raise DataError(folder, f"several {what} files match {pattern}: {[m.name for m in matches]}; "
                                "pass the file itself")
    return require_file(matches[0], what)


def load_json(path: Path, what: str = "JSON file") -> Any:
    """Parse a whole JSON file; truncated or invalid JSON names the file, line and column."""
    require_file(path, what)
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


def check_on_unknown_item(value: str) -> str:
    if value not in UNKNOWN_ITEM_CHOICES:
        raise ConfigError(f"on_unknown_item must be 'error' or 'drop', got {value!r}")
    return value


class SequenceBuilder:
    """Collects each user's item ids (in order) and maps them to catalog indices.

    Unknown item ids either raise (naming file, line and id) or are dropped and counted in
    ``dataset.dropped['unknown_item']``, so no interaction disappears silently.
    """

    def __init__(self, catalog: Catalog, on_unknown_item: str = "error") -> None:
        self.catalog = catalog
        self.on_unknown_item = check_on_unknown_item(on_unknown_item)
        self.sequences: dict[str, list[int]] = {}
        self.dropped = 0
        self._lookup = {item.item_id: i for i, item in enumerate(catalog)}.get  # hot path

    def add(self, user: str, item_id: str, path: Path, line: int | None, field: str | None = None) -> None:
        self.extend(user, (item_id,), path, line, field)

    def extend(self, user: str, item_ids: Iterable[str], path: Path, line: int | None | list[int],
               field: str | None = None) -> None:
        """Append ``item_ids`` (source ids, oldest first) to ``user``'s sequence.

        ``line`` is the source line of all of them, or a list with each one's line.
        """
        if not isinstance(item_ids, (list, tuple)):
            item_ids = list(item_ids)
        lookup = self._lookup
        indices = [lookup(i) for i in item_ids]
        seq = self.sequences.setdefault(user, [])
        if None not in indices:
            seq.extend(indices)
            return
        for k, (item_id, index) in enumerate(zip(item_ids, indices, strict=True)):
            if index is not None:
                seq.append(index)
            elif self.on_unknown_item == "error":
                raise DataError(path, f"item id {item_id!r} is not in the catalog "
                                      "(on_unknown_item='drop' skips and counts such items)",
                                line=line[k] if isinstance(line, list) else line, field=field)
            else:
                self.dropped += 1

    def extend_rows(self, rows: Iterable[tuple[str, str, int]], path: Path) -> None:
        """Add (user, item id, line) rows, already in time order, grouped per user in one pass."""
        per_user: dict[str, tuple[list[str], list[int]]] = {}
        for user, item_id, line in rows:
            entry = per_user.get(user)
            if entry is None:
                entry = per_user[user] = ([], [])
            entry[0].append(item_id)
            entry[1].append(line)
        for user, (ids, lines) in per_user.items():
            self.extend(user, ids, path, lines)

    def build(self, name: str, path: Path) -> SequenceDataset:
        """The dataset; users left without any item are removed and counted too."""
        sequences = {u: s for u, s in self.sequences.items() if s}
        dropped: dict[str, int] = {}
        if self.dropped:
            dropped["unknown_item"] = self.dropped
        if len(sequences) < len(self.sequences):
            dropped["users_left_empty"] = len(self.sequences) - len(sequences)
        if not sequences:
            why = f" ({self.dropped} interactions with unknown items dropped)" if self.dropped else ""
            raise DataError(path, f"no interactions read{why}")
        return SequenceDataset(self.catalog, sequences, name=name, dropped=dropped)


def catalog_from_ids(ids: list[str], titles: dict[str, Any] | None = None,
                     categories: dict[str, Any] | None = None, extra: dict[str, dict] | None = None) -> Catalog:
    """A catalog from id lists and optional id→title / id→category / id→extra maps."""
    titles = titles or {}
    categories = categories or {}
    extra = extra or {}
    items = []
    for i in ids:
        items.append(Item(item_id=i, title=clean(titles.get(i)) or "", categories=split_path(categories.get(i)),
                          extra=tuple(sorted((extra.get(i) or {}).items()))))
    return Catalog(items)


def read_id_map(path: Path) -> dict[str, str]:
    """A two-column TSV ``source_id<TAB>index`` (UniSRec ``item2index``, LC-Rec ``item2id``) as index -> source id."""
    require_file(path, "id map")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise DataError(path, f"expected 'source_id<TAB>index', got {len(parts)} fields", line=n)
            out[parts[1]] = parts[0]
    return out
