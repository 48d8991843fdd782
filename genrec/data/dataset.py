"""A dataset = a catalog + ordered user sequences (item indices), format-independent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from genrec.data.catalog import Catalog
from genrec.data.jsonl import read_json_lines


@dataclass
class SequenceDataset:
    """Ordered interaction sequences over a catalog.

    ``sequences`` maps a user id (the source's own, as a string) to that user's items as
    catalog indices, oldest first. ``name`` is the category / dataset name, used when
    several datasets are mixed in stage-1 fine-tuning.
    """

    catalog: Catalog
    sequences: dict[str, list[int]]
    name: str = "dataset"
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count, reported by readers

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        return len(self.catalog)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences.values())

    def stats_line(self) -> str:
        return f"users={self.num_users} items={self.num_items} interactions={self.num_interactions}"

    def save(self, directory: str | Path) -> None:
        """Write ``catalog.jsonl`` and ``sequences.jsonl`` (one user a line) atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.catalog.save(d / "catalog.jsonl")
        tmp = d / "sequences.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for user, seq in self.sequences.items():
                f.write(json.dumps({"user": user, "items": [self.catalog[i].item_id for i in seq]}) + "\n")
        tmp.replace(d / "sequences.jsonl")
        (d / "meta.json").write_text(json.dumps({"name": self.name, "dropped": self.dropped}))

    @classmethod
    def load(cls, directory: str | Path) -> SequenceDataset:
        """Read a folder written by :meth:`save` (the ``genrec`` native format)."""
        from genrec.errors import DataError

        d = Path(directory)
        catalog = Catalog.load(d / "catalog.jsonl")
        path = d / "sequences.jsonl"
        sequences: dict[str, list[int]] = {}
        for n, row in read_json_lines(path, "sequences file"):
            try:
                sequences[str(row["user"])] = [catalog.index_of(str(i)) for i in row["items"]]
            except KeyError as e:
                raise DataError(path, f"unknown item id or missing key {e}", line=n) from None
        meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
        return cls(catalog, sequences, name=meta.get("name", d.name), dropped=meta.get("dropped", {}))


@dataclass(frozen=True)
class Example:
    """One prediction task: a user's history (item indices, oldest first) and the next item."""

    user: str
    history: tuple[int, ...]
    target: int


@dataclass
class Split:
    """Leave-one-out split (SPEC.md §1).

    ``train`` holds each user's sequence without the validation and test targets;
    ``valid`` predicts the second-to-last item from what precedes it; ``test`` the last.
    Everything derived from interactions (popularity, groups, user prompts) reads ``train``.
    """

    dataset: SequenceDataset
    train: dict[str, list[int]]
    valid: list[Example]
    test: list[Example]
