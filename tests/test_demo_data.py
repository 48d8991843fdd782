"""The embedded demo data: deterministic, realistic text, and structure a model can learn."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest

from genrec.data.demo import demo_dataset, demo_datasets


@pytest.fixture(scope="module")
def demo():
    return demo_datasets(0)


def _fingerprint(datasets) -> list:
    return [(name, ds.catalog.fingerprint(), sorted(ds.sequences.items())) for name, ds in datasets.items()]


def test_deterministic_and_seeded(demo):
    again, other = demo_datasets(0), demo_datasets(1)
    assert set(demo) == {"electronics", "kitchen", "outdoors"}
    assert _fingerprint(demo) == _fingerprint(again)
    for name in demo:
        assert demo[name].sequences != other[name].sequences
    assert demo["kitchen"].catalog.fingerprint() != other["kitchen"].catalog.fingerprint()
    single = demo_dataset("outdoors")
    assert single.sequences == demo["outdoors"].sequences and single.name == "outdoors"
    with pytest.raises(KeyError, match="choose from"):
        demo_dataset("garden")


def test_generation_is_fast():
    start = time.perf_counter()
    demo_datasets(3)
    assert time.perf_counter() - start < 2.0  # about 0.4 s here; slack for a busy CPU


def test_sizes_and_ids(demo):
    ids = [it.item_id for ds in demo.values() for it in ds.catalog]
    assert len(ids) == len(set(ids))  # unique across shops
    users = [u for ds in demo.values() for u in ds.sequences]
    assert len(users) == len(set(users))
    for name, ds in demo.items():
        assert 100 <= len(ds.catalog) <= 200 and 300 <= len(ds.sequences) <= 600
        assert all(it.item_id.startswith(name[:3] + "-") for it in ds.catalog)
        lengths = [len(s) for s in ds.sequences.values()]
        assert min(lengths) >= 5 and max(lengths) <= 15
        assert all(0 <= i < len(ds.catalog) for s in ds.sequences.values() for i in s)
        assert all(a != b for s in ds.sequences.values() for a, b in zip(s, s[1:]))  # nothing for dedup to drop
    assert len({len(ds.sequences) for ds in demo.values()}) == 3  # different sizes, for category mixing


def test_items_have_full_realistic_text(demo):
    for ds in demo.values():
        titles = [it.title for it in ds.catalog]
        assert len(set(titles)) == len(titles)
        for item in ds.catalog:
            assert item.title.startswith(item.brand + " ")
            assert len(item.categories) == 3 and all(item.categories)
            assert re.fullmatch(r"\$\d+\.\d\d", item.price)
            assert 20 <= len(item.description) <= 200
            assert "None" not in repr(item.to_dict()) and "nan" not in item.title


def _leave_one_out(ds):
    """(train sequences, test (history, target) pairs): the last item of each user is the test target."""
    train = [s[:-1] for s in ds.sequences.values()]
    test = [(s[:-1], s[-1]) for s in ds.sequences.values()]
    return train, test


def test_bigram_beats_popularity(demo):
    """Sequential structure: 'most frequent follower of the last item' beats popularity clearly."""
    for ds in demo.values():
        train, test = _leave_one_out(ds)
        n = len(ds.catalog)
        follow = np.zeros((n, n))
        for seq in train:
            for a, b in zip(seq, seq[1:]):
                follow[a, b] += 1
        pop = np.bincount(np.concatenate(train), minlength=n)
        top_pop = set(np.argsort(-pop, kind="stable")[:10].tolist())
        hit_pop = np.mean([target in top_pop for _, target in test])
        hit_bigram = np.mean([target in set(np.argsort(-follow[hist[-1]], kind="stable")[:10].tolist())
                              for hist, target in test])
        assert hit_bigram > 2 * hit_pop and hit_bigram > hit_pop + 0.2, (ds.name, hit_bigram, hit_pop)


def test_accessories_follow_and_brands_are_loyal(demo):
    ds = demo["electronics"]
    cat = ds.catalog
    after_main = Counter()
    same_brand = []
    for seq in ds.sequences.values():
        for a, b in zip(seq, seq[1:]):
            if " for " not in cat[a].title:  # a main product
                after_main[" for " in cat[b].title and cat[b].title.endswith(cat[a].title.split(", ")[0]
                                                                             .split(" ", 2)[2])] += 1
        brands = Counter(cat[i].brand for i in seq)
        same_brand.append(brands.most_common(1)[0][1] / len(seq))
    assert after_main[True] > 2 * after_main[False]  # mostly its own accessory comes next
    assert np.mean(same_brand) > 0.75


def test_popularity_is_skewed(demo):
    for ds in demo.values():
        counts = np.sort(np.bincount(np.concatenate(list(ds.sequences.values())), minlength=len(ds.catalog)))[::-1]
        top = counts[: len(counts) // 5].sum() / counts.sum()
        assert top > 0.35, (ds.name, top)  # the top 20% of items take well over 20% of purchases
