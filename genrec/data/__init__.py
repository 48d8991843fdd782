"""Data layer: catalog, sequences, readers for common formats, preprocessing."""

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import Example, SequenceDataset, Split

__all__ = ["Catalog", "Item", "SequenceDataset", "Example", "Split"]
