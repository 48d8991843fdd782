"""Decoding onto the catalog (SPEC.md §6): a prefix tree over the item target texts and the
decoders that can only spell catalog items (constrained beam search and sampling)."""
