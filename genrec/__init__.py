"""genrec: generative recommendation with LLMs (CALRec + QRR BM25 grounding, LLM-ESR fallback)."""

from genrec.data import Catalog, Example, Item, SequenceDataset, Split

__version__ = "0.1.0"
__all__ = ["Catalog", "Item", "SequenceDataset", "Example", "Split", "__version__"]
