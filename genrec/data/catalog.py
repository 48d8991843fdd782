"""The item catalog: item text fields, independent of the source format.

Items are addressed everywhere inside genrec by their *index* (0..N-1, the row in the
catalog); the source's own id is kept as ``Item.item_id`` for input and output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Item:
    """One catalog item. Missing attributes are ``None`` (never "nan" or "")."""

    item_id: str
    title: str
    brand: str | None = None
    categories: tuple[str, ...] = ()
    price: str | None = None
    description: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["categories"] = list(self.categories)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Item:
        return cls(
            item_id=str(d["item_id"]),
            title=d.get("title") or "",
            brand=d.get("brand") or None,
            categories=tuple(d.get("categories") or ()),
            price=d.get("price") or None,
            description=d.get("description") or None,
            extra=tuple(sorted((d.get("extra") or {}).items())),
        )


class Catalog:
    """An ordered collection of items with a lookup from source id to index."""

    def __init__(self, items: Iterable[Item]) -> None:
        self.items: list[Item] = list(items)
        self._index: dict[str, int] = {}
        for i, item in enumerate(self.items):
            if item.item_id in self._index:
                raise ValueError(f"duplicate item id {item.item_id!r} in catalog")
            self._index[item.item_id] = i

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def index_of(self, item_id: str) -> int:
        """Index of a source item id; KeyError if unknown."""
        return self._index[item_id]

    def get_index(self, item_id: str) -> int | None:
        return self._index.get(item_id)

    def fingerprint(self) -> str:
        """A stable hash of the catalog content (for cache manifests)."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(json.dumps(item.to_dict(), sort_keys=True).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write as JSON Lines, one item a line, in index order."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for item in self.items:
                f.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        from genrec.data.jsonl import read_json_lines
        from genrec.errors import DataError

        items = []
        for n, row in read_json_lines(path, "catalog file"):
            try:
                items.append(Item.from_dict(row))
            except KeyError as e:
                raise DataError(path, f"bad catalog row: missing {e}", line=n) from None
        return cls(items)
