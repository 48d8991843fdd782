"""The shared real datasets (../shared/data, read in place): exact published counts before any
filtering, plus spot checks of order and text against the files' own first lines.

Skipped, with the folder named, where ../shared/data is absent (e.g. a clean clone elsewhere).
"""

from __future__ import annotations

import functools

import pytest

from genrec.cli import main
from genrec.data.readers import read_dataset
from genrec.data.stats import dataset_stats, describe
from tests.conftest import shared

COUNTS = [
    ("lcrec", "amazon18_industrial_scientific_lcrec", "users=8317 items=4344 interactions=58492"),
    ("p5", "amazon14_beauty", "users=22363 items=12101 interactions=198502"),
    ("recbole", "movielens", "users=943 items=1682 interactions=100000"),
    ("dealrec", "amazon18_video_games_dealrec", "users=49156 items=17332 interactions=342329"),
    ("recbole", "amazon18_industrial_scientific_unisrec", "users=8442 items=4385 interactions=59384"),
    ("recbole", "amazon18_video_games_llmrank", "users=50546 items=16859 interactions=440264"),
    ("lcrec", "amazon18_musical_instruments_lcrec_notext", "users=24772 items=9922 interactions=206153"),
]


@functools.cache
def _read(fmt: str, folder: str):
    return read_dataset(fmt, shared(folder))


def test_data_stats_command(capsys):
    fmt, folder, expected = COUNTS[0]
    assert main(["data", "stats", "--format", fmt, "--path", str(shared(folder))]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == expected
    assert dataset_stats(fmt, str(shared(folder))).splitlines()[-1] == expected


@pytest.mark.parametrize("fmt,folder,expected", COUNTS)
def test_counts(fmt, folder, expected):
    assert describe(_read(fmt, folder))[-1] == expected


def test_data_stats_bad_path_is_a_clean_error(tmp_path, capsys):
    assert main(["data", "stats", "--format", "lcrec", "--path", str(tmp_path / "missing")]) == 2
    assert "missing: not found" in capsys.readouterr().err


def ids(ds, user, n=None):
    return [ds.catalog[i].item_id for i in ds.sequences[user][:n]]


def test_scientific_lcrec_text():
    ds = _read("lcrec", "amazon18_industrial_scientific_lcrec")
    assert ids(ds, "0") == [str(i) for i in range(9)]
    it = ds.catalog[0]
    assert it.title.startswith("SUPCO SPP6 Relay/Capacitor Hard Start Kit")
    assert it.categories == ("Industrial & Scientific", "Industrial Electrical", "Passive Components", "Capacitors")
    # 313 descriptions are ".", 123 empty, 3 " ." in the file: all missing, none rendered as text
    assert sum(1 for x in ds.catalog if x.description is None) == 439
    for x in ds.catalog:
        for value in (x.title, x.brand, x.description, *x.categories):
            assert value is None or value.lower() not in ("", ".", "nan", "none")


def test_movielens_time_order_ties_by_row():
    ds = _read("recbole", "movielens")
    # `sort -s -k4,4n` of user 1's rows: 168 and 172 share a timestamp, as do 196/166 and 14/250/127
    assert ids(ds, "1", 10) == ["168", "172", "165", "156", "196", "166", "187", "14", "250", "127"]
    toy = ds.catalog[ds.catalog.index_of("1")]
    assert (toy.title, toy.categories, dict(toy.extra)) == ("Toy Story", ("Animation", "Children's", "Comedy"),
                                                            {"year": "1995"})


def test_beauty_transrec_relabeling_is_read():
    ds = _read("p5", "amazon14_beauty")
    assert ids(ds, "1") == ["10318", "6381", "2387", "4084", "1425"]
    assert ds.catalog[0].title == "Glow in the Dark Neon Nail Polish (6 Pack)"
    assert ds.catalog[0].categories == ("Beauty", "Makeup", "Nails", "Nail Polish")


def test_games_dealrec_periods_concatenated_with_asins():
    ds = _read("dealrec", "amazon18_video_games_dealrec")
    assert ids(ds, "4") == ["166", "167", "168", "2", "169"]  # train "166 167 168 2", valid empty, test "169"
    first = ds.catalog[ds.catalog.index_of("1")]
    assert (first.title, dict(first.extra)["asin"]) == ("X: Beyond the Frontier - PC", "B00004DSDE")


def test_llmrank_test_file_is_the_sequence():
    ds = _read("recbole", "amazon18_video_games_llmrank")
    assert ids(ds, "0") == [str(i) for i in range(15)]
    assert ds.catalog[0].title == "Fire Emblem: The Sacred Stones"
