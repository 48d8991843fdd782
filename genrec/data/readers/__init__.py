"""Readers from common formats into a :class:`SequenceDataset` (catalog + ordered sequences).

``read_dataset(fmt, path)`` is the one entry point; every reader raises :class:`DataError`
naming the file (and line or field) on bad input, and either rejects or counts sequence
items the catalog lacks (``on_unknown_item``), never dropping them silently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from genrec.data.dataset import SequenceDataset
from genrec.data.readers.amazon2018 import read_amazon2018
from genrec.data.readers.dealrec import read_dealrec
from genrec.data.readers.lcrec import read_lcrec
from genrec.data.readers.p5 import read_p5
from genrec.data.readers.recbole import read_recbole
from genrec.data.readers.tabular import read_table
from genrec.errors import ConfigError, DataError


def _read_native(path: str | Path, on_unknown_item: str = "error", name: str | None = None) -> SequenceDataset:
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
    "native": _read_native,
}


def read_dataset(fmt: str, path: str | Path, *, on_unknown_item: str = "error", name: str | None = None,
                 **options) -> SequenceDataset:
    """Read ``path`` in format ``fmt`` (see ``FORMATS``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {fmt!r}; choose from {', '.join(sorted(FORMATS))}")
    if not Path(path).exists():
        raise DataError(path, "not found")
    try:
        return FORMATS[fmt](path, on_unknown_item=on_unknown_item, name=name, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ConfigError(f"format {fmt!r}: {e}") from None
        raise


__all__ = ["FORMATS", "read_dataset"]
