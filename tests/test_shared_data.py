"""The shared real datasets read with the exact published counts (before any filtering)."""

from __future__ import annotations

import pytest

from genrec.cli import main
from tests.conftest import shared


@pytest.mark.parametrize("fmt,folder,expected", [
    ("lcrec", "amazon18_industrial_scientific_lcrec", "users=8317 items=4344 interactions=58492"),
    ("p5", "amazon14_beauty", "users=22363 items=12101 interactions=198502"),
    ("recbole", "movielens", "users=943 items=1682 interactions=100000"),
    ("dealrec", "amazon18_video_games_dealrec", "users=49156 items=17332 interactions=342329"),
    ("recbole", "amazon18_industrial_scientific_unisrec", "users=8442 items=4385 interactions=59384"),
])
def test_data_stats_command(fmt, folder, expected, capsys):
    assert main(["data", "stats", "--format", fmt, "--path", str(shared(folder))]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == expected


def test_data_stats_bad_path_is_a_clean_error(tmp_path, capsys):
    assert main(["data", "stats", "--format", "lcrec", "--path", str(tmp_path / "missing")]) == 2
    assert "missing: not found" in capsys.readouterr().err
