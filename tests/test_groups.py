"""Head/tail groups: exactly ceil(0.2 N), with the stated tie rules."""

from __future__ import annotations

import numpy as np

from genrec.data.groups import head_items, head_users, item_popularity


def test_head_users_ties_by_numeric_id():
    train = {"10": [1, 2, 3], "2": [1, 2, 3], "3": [1], "4": [1], "5": [1], "6": [1], "7": [1], "8": [1],
             "9": [1], "1": [1, 2]}
    # N = 10 -> 2 head users; "2" and "10" tie on length 3; both in. Numeric order matters below.
    assert head_users(train) == {"2", "10"}
    tie = {"10": [1], "9": [1], "11": [1], "12": [1], "13": [1]}  # N=5 -> 1 head user: smallest id 9
    assert head_users(tie) == {"9"}
    assert head_users({"b": [1], "a": [1], "c": [1]}) == {"a"}  # non-numeric ids: string order


def test_head_items_ties_by_index():
    train = {"u": [0, 1, 1, 2, 2, 3, 3], "v": [4]}
    counts = item_popularity(train, 10)
    assert counts.tolist() == [1, 2, 2, 2, 1, 0, 0, 0, 0, 0]
    mask = head_items(train, 10)  # ceil(2) = 2 head items: counts tie at 2 for 1,2,3 -> 1 and 2
    assert np.flatnonzero(mask).tolist() == [1, 2]
    assert head_items(train, 11).sum() == 3  # ceil(2.2) = 3


def test_head_count_exact():
    from genrec.data.groups import head_count

    assert [head_count(n) for n in (1, 4, 5, 6, 10, 11, 15, 8317)] == [1, 1, 1, 2, 2, 3, 3, 1664]


def test_head_users_mixed_ids_compare_as_strings():
    # one id is not an integer -> all compared as strings: "10" < "9" < "x"
    train = {"9": [1], "10": [1], "x": [1], "a1": [1], "b2": [1]}  # N=5 -> 1 head user
    assert head_users(train) == {"10"}
    # length beats id: the longest sequence is head whatever its id
    assert head_users({"1": [1], "2": [1], "3": [1], "4": [1], "zz": [1, 2]}) == {"zz"}


def test_item_popularity_counts_repeats_and_checks_range():
    import pytest

    assert item_popularity({"a": [2, 2, 0], "b": []}, 3).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="out of range"):
        item_popularity({"a": [3]}, 3)
