"""Readers from common formats into a :class:`SequenceDataset` (catalog + ordered sequences).

``read_dataset(fmt, path)`` is the one entry point. Every reader raises :class:`DataError`
naming the file (and line or field) on bad input — missing or empty file, truncated JSON,
a non-integer id, a missing mapped column — and either rejects sequence items the catalog
lacks (``on_unknown_item="error"``, naming file, line and id) or drops them and counts them
in ``dataset.dropped`` (``"drop"``), never silently.

Formats (each module's docstring says which files it reads):

=========== ===================================================================
lcrec       ``X.inter.json`` + ``X.item.json`` (LC-Rec / LETTER)
recbole     RecBole atomic ``X.inter`` (+ ``X.item``), incl. sequential ``*.test.inter``
p5          ``sequential_data.txt`` + ``id2title.json`` / ``id2category.json`` (P5 / TransRec)
dealrec     ``sequential_{train,valid,test}.txt`` + ``seqid2title.json`` (DEALRec)
amazon2018  ``<Category>_5.json.gz`` + ``meta_<Category>.json.gz`` (official download)
csv, jsonl  a table with a column mapping (see :mod:`genrec.data.readers.tabular`)
native      a folder written by :meth:`SequenceDataset.save`
=========== ===================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from genrec.data.dataset import SequenceDataset
from genrec.data.readers._common import check_on_unknown_item
from genrec.data.readers.amazon2018 import read_amazon2018
from genrec.data.readers.dealrec import read_dealrec
from genrec.data.readers.lcrec import read_lcrec
from genrec.data.readers.p5 import read_p5
from genrec.data.readers.recbole import read_recbole
from genrec.data.readers.tabular import read_table
from genrec.errors import ConfigError, DataError


def read_native(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
    """A folder written by :meth:`SequenceDataset.save` (``catalog.jsonl`` + ``sequences.jsonl``)."""
    ds = SequenceDataset.load(path)
    if name:
        ds.name = name
    return ds


FORMATS: dict[str, Callable[..., SequenceDataset]] = {
    "lcrec": read_lcrec,
    "recbole": read_recbole,
    "p5": read_p5,
    "dealrec": read_dealrec,
    "amazon2018": read_amazon2018,
    "csv": read_table,
    "jsonl": read_table,
    "native": read_native,
}


def reader_options(fmt: str) -> list[str]:
    """The extra keyword options a format's reader takes (e.g. the csv column mapping)."""
    params = inspect.signature(FORMATS[fmt]).parameters
    return [p for p in params if p not in ("path", "on_unknown_item", "name")]


def read_dataset(fmt: str, path: str | Path, *, on_unknown_item: str = "error", name: str | None = None,
                 **options) -> SequenceDataset:
    """Read ``path`` (a folder, or a file where the format has one main file) in format ``fmt``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {fmt!r}; choose from {', '.join(sorted(FORMATS))}")
    check_on_unknown_item(on_unknown_item)
    unknown = sorted(set(options) - set(reader_options(fmt)))
    if unknown:
        allowed = ", ".join(reader_options(fmt)) or "none"
        raise ConfigError(f"format {fmt!r} takes no option(s) {', '.join(unknown)}; options: {allowed}")
    if not Path(path).exists():
        raise DataError(path, "not found")
    return FORMATS[fmt](Path(path), on_unknown_item=on_unknown_item, name=name, **options)


__all__ = ["FORMATS", "read_dataset", "reader_options"]
