"""docs/results.md stays a page for readers: short, opening with the ledger's tables, every precise
number traceable to the ledger (docs/results/summary.json) or to the peers' published rows
(docs/results/published.json), and no entry labelled by anything but a date and a commit."""

from __future__ import annotations

import json
import re

from tests.conftest import REPO

DOCS = REPO / "docs"
PAGE = DOCS / "results.md"
LEDGERS = (DOCS / "results" / "summary.json", DOCS / "results" / "published.json")
MAX_LINES = 250

# A decimal with at least three digits after the point: the precision at which a number is a
# measurement someone could look up, not a setting (lr 1e-3, w 0.02) or a rounded ratio (1.13 x).
NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(\d*\.\d{3,})(?![\d.])")
# An entry labelled by the work period that produced it (an ordinal, or "this", "last" ...) rather
# than by its date and commit.
SESSION_LABEL = re.compile(
    r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    r"thirteenth|\d+(st|nd|rd|th)|this|that|previous|next|same|earlier|later|last)[- ]sessions?\b",
    re.IGNORECASE,
)


def json_numbers(obj: object) -> list[float]:
    """Every number anywhere in a JSON document (nested dicts and lists included), as its absolute value."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [abs(float(obj))]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in json_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in json_numbers(v)]
    return []


def unknown_numbers(text: str, known: list[float]) -> list[tuple[int, str]]:
    """(line number, number) for each 3+-decimal number of ``text`` that no known value rounds to."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for match in NUMBER.finditer(line):
            digits = match.group(1)
            value = float(digits)
            half_ulp = 0.5 * 10 ** -len(digits.split(".")[1]) + 1e-12
            if not any(abs(v - value) <= half_ulp for v in known):
                found.append((lineno, match.group(0)))
    return found


def known_values() -> list[float]:
    return [x for path in LEDGERS for x in json_numbers(json.loads(path.read_text(encoding="utf-8")))]


def test_checker_flags_only_numbers_missing_from_the_ledger() -> None:
    known = json_numbers({"a": {"ndcg@10": 0.07986, "ci": [-0.000909, 7.2e-05]}, "n": 8317, "ok": True})
    text = "SASRec 0.0799 and 0.080 (±0.0009), lr 1e-3, w 0.02\nmade up 0.0801 and .1234\n"
    assert unknown_numbers(text, known) == [(2, "0.0801"), (2, ".1234")]
    assert unknown_numbers("delta \u22120.0009 and 7.20e-5", known) == []


def test_every_precise_number_on_the_page_is_in_the_ledger_or_the_published_rows() -> None:
    missing = unknown_numbers(PAGE.read_text(encoding="utf-8"), known_values())
    assert not missing, f"{PAGE.relative_to(REPO)}: numbers in neither ledger file (line, number): {missing}"


def test_page_is_short_and_opens_with_the_ledger_tables() -> None:
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"{PAGE.relative_to(REPO)}: {len(lines)} lines (at most {MAX_LINES})"
    begin = lines.index("<!-- ledger_report: begin -->")
    end = lines.index("<!-- ledger_report: end -->")
    assert begin < 15 < end, "the ledger's tables open the page"
    assert any("eval/ledger_report.py" in line for line in lines[:begin]), (
        "the page says which command prints them"
    )
    assert any(line.startswith("| ") for line in lines[begin:end])


def test_no_entry_is_labelled_by_a_session() -> None:
    assert "session" not in PAGE.read_text(encoding="utf-8").lower()
    pages = [DOCS / "reproduce.md", *sorted((DOCS / "experiments").glob("*.md"))]
    assert len(pages) >= 6
    for path in pages:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not SESSION_LABEL.search(line), f"{path.relative_to(REPO)}:{lineno}: {line.strip()}"


def test_experiment_pages_open_with_a_title_and_a_summary() -> None:
    for path in sorted((DOCS / "experiments").glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# "), f"{path.relative_to(REPO)}:1: a '# ' title"
        assert lines[1] == "" and lines[2] and lines[3], f"{path.relative_to(REPO)}:3: a two-line summary"
        assert re.search(r"20\d\d-\d\d-\d\d, [0-9a-f]{7}", lines[2] + lines[3]), (
            f"{path.relative_to(REPO)}:3: the summary names a date and a commit"
        )
