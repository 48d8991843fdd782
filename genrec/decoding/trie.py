"""The prefix tree of every catalog item's target text, as flat integer arrays.

Why arrays: a million items of ~30 tokens as nested dicts of Python objects would take
gigabytes and minutes to build; here the tree is four int32 arrays built with a handful of
vectorised passes (one per depth), saved as one ``.npz`` beside the bundle and memory-mapped
back (bench/decoding.py: 1M items of ~25-50 tokens → 3.1M nodes, 41 MB, built in 12 s on a
shared 2-core CPU; the build briefly holds an [items, depth] int64 matrix). Nodes are numbered
breadth-first with the children of a node contiguous and sorted by token, so node ``v``'s children are the nodes ``first_child[v] .. first_child[v+1]-1`` and
their tokens ``token[first_child[v]:first_child[v+1]]`` (node 0 is the root; ``token[0]`` is
unused). Items end at nodes: ``item_ptr[v] .. item_ptr[v+1]`` indexes ``items``, the catalog
indices whose target text is exactly the path to ``v`` (several when texts are identical:
they tie, SPEC.md §6). A node can end an item and still have children (a text that is a token
prefix of another); decoders then offer both.

The token ids are those of ``template.render_target(item)`` encoded on its own without
special tokens — exactly what the model is trained to generate after the prompt, terminator
included — so a template change (e.g. shorter targets) changes the tree with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrec.errors import GenrecError

FORMAT = "genrec-trie-1"


@dataclass
class ItemTrie:
    """A prefix tree over token sequences; ``num_items`` sequences, ``num_nodes`` nodes."""

    first_child: np.ndarray  # int32 [num_nodes + 1]
    token: np.ndarray        # int32 [num_nodes]: the token on the edge into each node
    item_ptr: np.ndarray     # int32 [num_nodes + 1]
    items: np.ndarray        # int32 [num_items]: catalog indices grouped by end node
    depth: int               # longest sequence, in tokens
    meta: dict               # what it was built from (tokenizer, template fingerprints, ...)

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]], meta: dict | None = None) -> ItemTrie:
        """The tree of ``sequences[i]`` = token ids of item i (every one non-empty)."""
        n = len(sequences)
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n)
        if n == 0:
            raise GenrecError("cannot build a prefix tree over an empty catalog")
        if lengths.min() == 0:
            raise GenrecError(f"item {int(np.argmin(lengths))} has an empty target text")
        depth = int(lengths.max())
        flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(lengths.sum()))
        # [n, depth] padded with -1 (sorts before every token: shorter texts first)
        padded = np.full((n, depth), -1, dtype=np.int64)
        padded[np.arange(depth) < lengths[:, None]] = flat
        order = np.lexsort(padded.T[::-1])  # rows in lexicographic order of their token paths
        padded, lengths = padded[order], lengths[order]

        parents: list[np.ndarray] = []
        tokens: list[np.ndarray] = []
        node_of_row = np.zeros(n, dtype=np.int64)  # each row's node at the current depth (root 0)
        next_id = 1
        end_node = np.zeros(n, dtype=np.int64)
        for d in range(depth):
            active = np.flatnonzero(lengths > d)
            col = padded[active, d]
            # a new node wherever the prefix up to d differs from the previous active row's
            # (rows of one parent are contiguous in lexicographic order)
            prev = node_of_row[active]
            differs = np.ones(active.size, dtype=bool)
            differs[1:] = (prev[1:] != prev[:-1]) | (col[1:] != col[:-1])
            new_ids = next_id + np.cumsum(differs) - 1
            starts = active[differs]
            parents.append(node_of_row[starts])
            tokens.append(padded[starts, d])
            next_id += int(differs.sum())
            node_of_row[active] = new_ids
            ends = active[lengths[active] == d + 1]
            end_node[ends] = node_of_row[ends]
        parent = np.concatenate(parents)  # of nodes 1..N-1, non-decreasing by construction
        num_nodes = next_id
        first_child = np.empty(num_nodes + 1, dtype=np.int64)
        first_child[:num_nodes] = np.searchsorted(parent, np.arange(num_nodes), side="left") + 1
        first_child[num_nodes] = num_nodes
        token = np.concatenate([[-1], np.concatenate(tokens)])
        by_node = np.argsort(end_node, kind="stable")
        items = order[by_node]
        item_ptr = np.searchsorted(end_node[by_node], np.arange(num_nodes + 1), side="left")
        return cls(first_child.astype(np.int32), token.astype(np.int32), item_ptr.astype(np.int32),
                   items.astype(np.int32), depth, dict(meta or {}))

    @classmethod
    def from_catalog(cls, catalog, template, tokenizer, meta: dict | None = None) -> ItemTrie:
        """The tree of every catalog item's ``template.render_target(item)`` token ids."""
        texts = [template.render_target(item) for item in catalog]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        info = {"num_items": len(catalog), "catalog_fingerprint": catalog.fingerprint(),
                "template_fingerprint": template.fingerprint(), "tokenizer": tokenizer_fingerprint(tokenizer)}
        info.update(meta or {})
        return cls.build(ids, info)

    # -- queries -------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return int(self.first_child.shape[0] - 1)

    @property
    def num_items(self) -> int:
        return int(self.items.shape[0])

    def children(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, child nodes) of ``node``, tokens ascending."""
        lo, hi = int(self.first_child[node]), int(self.first_child[node + 1])
        return self.token[lo:hi], np.arange(lo, hi, dtype=np.int64)

    def child(self, node: int, token: int) -> int:
        """The child of ``node`` along ``token``, or -1 when the tree has no such edge."""
        lo, hi = int(self.first_child[node]), int(self.first_child[node + 1])
        j = lo + int(np.searchsorted(self.token[lo:hi], token))
        return j if j < hi and int(self.token[j]) == token else -1

    def items_at(self, node: int) -> np.ndarray:
        """Catalog indices whose whole text ends at ``node`` (empty for inner nodes)."""
        return self.items[int(self.item_ptr[node]):int(self.item_ptr[node + 1])]

    def is_end(self, node: int) -> bool:
        return bool(self.item_ptr[node + 1] > self.item_ptr[node])

    def walk(self, token_ids: Sequence[int]) -> int:
        """The node a token path leads to from the root, or -1 when it leaves the tree."""
        node = 0
        for t in token_ids:
            node = self.child(node, int(t))
            if node < 0:
                return -1
        return node

    def lookup(self, token_ids: Sequence[int]) -> np.ndarray:
        """The items spelled exactly by ``token_ids`` (empty when none is)."""
        node = self.walk(token_ids)
        return self.items_at(node) if node >= 0 else np.empty(0, dtype=np.int32)

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.first_child, self.token, self.item_ptr, self.items)))

    def stats(self) -> dict:
        distinct_ends = int(np.count_nonzero(np.diff(self.item_ptr)))
        return {"items": self.num_items, "nodes": self.num_nodes, "depth": self.depth, "bytes": self.nbytes(),
                "distinct_texts": distinct_ends, "tied_items": self.num_items - distinct_ends}

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """One ``.npz`` (uncompressed, so it loads memory-mapped), written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        meta = dict(self.meta, format=FORMAT, depth=self.depth)
        np.savez(tmp, first_child=self.first_child, token=self.token, item_ptr=self.item_ptr, items=self.items,
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> ItemTrie:
        path = Path(path)
        try:
            with np.load(path, mmap_mode="r" if mmap else None) as z:
                meta = json.loads(bytes(np.asarray(z["meta"])).decode())
                arrays = {k: np.asarray(z[k]) for k in ("first_child", "token", "item_ptr", "items")}
        except (OSError, ValueError, KeyError) as e:
            raise GenrecError(f"{path}: unreadable prefix tree: {type(e).__name__}: {e}") from None
        if meta.get("format") != FORMAT:
            raise GenrecError(f"{path}: not a {FORMAT} prefix tree (format={meta.get('format')!r})")
        return cls(depth=int(meta.pop("depth")), meta=meta, **arrays)


def tokenizer_fingerprint(tokenizer) -> str:
    """Changes when the tokenizer's vocabulary does (a tree from another tokenizer is wrong)."""
    vocab = tokenizer.get_vocab()
    text = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
