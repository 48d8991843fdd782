"""The embedded demo data: deterministic, and with structure a model can learn."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from genrec.data.demo import demo_datasets
from genrec.data.preprocess import leave_one_out


def test_deterministic_and_seeded():
    a, b, c = demo_datasets(0), demo_datasets(0), demo_datasets(1)
    assert set(a) == {"electronics", "kitchen", "outdoors"}
    for name in a:
        assert a[name].catalog.fingerprint() == b[name].catalog.fingerprint()
        assert a[name].sequences == b[name].sequences
    assert a["kitchen"].sequences != c["kitchen"].sequences
    ids = [it.item_id for ds in a.values() for it in ds.catalog]
    assert len(ids) == len(set(ids))


def test_items_have_full_text():
    for ds in demo_datasets().values():
        for item in ds.catalog:
            assert item.title and item.brand and len(item.categories) >= 3 and item.price.startswith("$")


def test_bigram_beats_popularity():
    """Sequential structure: 'most frequent follower of the last item' beats popularity."""
    for ds in demo_datasets().values():
        split = leave_one_out(ds)
        follow: dict[int, Counter] = defaultdict(Counter)
        for seq in split.train.values():
            for a, b in zip(seq, seq[1:]):
                follow[a][b] += 1
        pop = Counter(i for seq in split.train.values() for i in seq)
        top_pop = [i for i, _ in pop.most_common(10)]
        hit_pop = np.mean([ex.target in top_pop for ex in split.test])
        hit_bigram = np.mean([ex.target in [i for i, _ in follow[ex.history[-1]].most_common(10)]
                              for ex in split.test])
        assert hit_bigram > hit_pop + 0.15, (ds.name, hit_bigram, hit_pop)
