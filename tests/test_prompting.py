"""Prompt templates: round trips on real items, missing attributes, token budgets."""

from __future__ import annotations

import json

import pytest

from genrec.data.catalog import Item
from genrec.errors import GenrecError
from genrec.prompting import PromptTemplate, available_templates, esr_item_text, esr_user_text
from tests.conftest import REPO, shared


@pytest.fixture(scope="module")
def scientific_items() -> list[Item]:
    """Real Amazon items, read straight from the file (no genrec reader involved)."""
    raw = json.loads((shared("amazon18_industrial_scientific_lcrec") / "Scientific.item.json").read_text())
    return [Item(item_id=k, title=v.get("title") or "", brand=v.get("brand") or None,
                 categories=tuple(c for c in (v.get("categories") or "").split(",") if c),
                 description=v.get("description") or None)
            for k, v in raw.items()]


def _count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_shipped_templates_load():
    assert {"calrec", "calrec_compact", "calrec_short", "esr_item", "esr_user"} <= set(available_templates())
    for name in ("calrec", "calrec_compact", "calrec_short", "calrec_short_brand"):
        t = PromptTemplate.load(name)
        assert t.name == name and t.terminator == "\n" and t.max_tokens
        assert PromptTemplate.load(REPO / "prompts" / f"{name}.yaml").fingerprint() == t.fingerprint()


@pytest.mark.parametrize("name", ["calrec", "calrec_compact", "calrec_short", "calrec_short_brand"])
def test_target_round_trip_on_real_items(name, scientific_items):
    t = PromptTemplate.load(name)
    checked = 0
    for item in scientific_items:
        text = t.render_target(item)
        assert text.endswith(t.terminator) and text.count(t.terminator) == 1
        attrs = t.generated_attributes
        want = {a.field: v for a in attrs if (v := t._value(item, a)) is not None}
        whole = t.attribute_separator.join(next(a.prefix for a in attrs if a.field == f) + v
                                           for f, v in want.items())
        if len(whole) <= (t.max_item_chars or 10**9):  # the line was not cut as a whole
            assert t.parse_target(text) == want, item.item_id
            assert t.parse_target(text + "Item: trailing junk\n") == want
            checked += 1
        else:  # capped: the leading attributes still parse exactly
            assert t.parse_target(text)["title"] == want["title"]
    assert checked > len(scientific_items) // 2
    if name == "calrec_compact":  # short category: the last two levels
        item = next(i for i in scientific_items if len(i.categories) >= 4)
        assert t.parse_target(t.render_target(item))["categories"] == " > ".join(item.categories[-2:])


def test_short_target_is_the_title_while_history_keeps_every_attribute():
    template = PromptTemplate.load("calrec_short")
    item = Item(item_id="a", title="Nitrile Gloves, Large", brand="Lab Co", categories=("Lab", "Safety", "Gloves"))
    assert template.render_item(item) == "Nitrile Gloves, Large | Brand: Lab Co | Category: Safety > Gloves"
    assert template.render_target(item) == "- Nitrile Gloves, Large\n"
    assert template.render_target_item(item) == "Nitrile Gloves, Large"
    prompt, target = template.render_example([item], item)
    assert target == "- Nitrile Gloves, Large\n" and "Brand: Lab Co" in prompt
    assert template.parse_target("- Nitrile Gloves, Large\n- more") == {"title": "Nitrile Gloves, Large"}
    branded = PromptTemplate.load("calrec_short_brand")
    assert branded.render_target(item) == "- Nitrile Gloves, Large | Brand: Lab Co\n"
    assert branded.parse_target("- Nitrile Gloves, Large | Brand: Lab Co\n") == {
        "title": "Nitrile Gloves, Large", "brand": "Lab Co"}
    # Without target_attributes the target is the history line, as before.
    compact = PromptTemplate.load("calrec_compact")
    assert compact.render_target_item(item) == compact.render_item(item)


def test_parse_is_tolerant_of_generated_text():
    t = PromptTemplate.load("calrec")
    assert t.parse_target("Title: Lab Gloves |Brand:Acme  | Price: $3") == \
        {"title": "Lab Gloves", "brand": "Acme", "price": "$3"}
    assert t.parse_target("Item: Title: A | Brand: B\nItem: Title: C") == {"title": "A", "brand": "B"}
    assert t.parse_target("") == {}


def test_missing_attributes_are_left_out():
    t = PromptTemplate.load("calrec")
    assert t.render_item(Item("1", "Widget", brand=None, categories=(), price=None, description=None)) == \
        "Title: Widget"
    odd = Item("2", "Widget", brand="nan", categories=("", "Tools", "None"), price="None", description=" . ")
    assert t.render_item(odd) == "Title: Widget | Category: Tools"
    assert t.render_item(Item("3", "Widget", price=float("nan"))) == "Title: Widget"
    full = t.render_target(Item("4", "W", brand="B", categories=("A", "C"), price="$1.00", description="D"))
    assert full == "Item: Title: W | Brand: B | Category: A > C | Price: $1.00 | Description: D\n"
    assert esr_item_text(Item("1", "Widget", brand="Acme")) == \
        "The item has following attributes: name is Widget; brand is Acme."
    assert esr_item_text(odd) == ("The item has following attributes: name is Widget. "
                                  "The item has following features: Tools.")


def test_item_text_is_one_capped_line():
    t = PromptTemplate.load("calrec")
    item = Item("1", "A\nmulti-line\ttitle", description="word " * 200)
    line = t.render_item(item)
    assert "\n" not in line and line.startswith("Title: A multi-line title | Description: word")
    assert len(line) <= t.max_item_chars and line.endswith("...")


def test_custom_terminator_cannot_occur_inside_item_text(tmp_path):
    data = {"name": "mine", "attributes": [{"field": "title", "prefix": "T: "}], "terminator": " END"}
    (tmp_path / "mine.yaml").write_text(json.dumps(data))
    t = PromptTemplate.load(tmp_path / "mine.yaml")
    assert t.render_target(Item("1", "A")) == "T: A END"
    assert t.parse_target("T: A END more") == {"title": "A"}
    text = t.render_target(Item("2", "THE END OF DAYS"))
    assert text.count("END") == 1 and t.parse_target(text) == {"title": "THE OF DAYS"}


def test_budget_drops_oldest_and_never_cuts_target(tokenizer):
    t = PromptTemplate.load("calrec_compact")
    history = [Item(str(i), f"Product number {i} with a fairly long descriptive title", brand="Acme")
               for i in range(60)]
    target = Item("t", "The target " + "very " * 30 + "long title", brand="Brand")
    for budget in (120, 200, 333):
        prompt, target_text = t.render_example(history, target, tokenizer, max_tokens=budget)
        assert target_text == t.render_target(target)  # never cut
        assert _count(tokenizer, prompt) + _count(tokenizer, target_text) <= budget
        kept = [i for i in range(60) if f"number {i} " in prompt]
        assert kept and kept == list(range(kept[0], 60))  # the newest, contiguous
        one_more = t._history_text([t.render_item(history[i]) for i in range(kept[0] - 1, 60)])
        assert _count(tokenizer, one_more) + _count(tokenizer, target_text) > budget  # and no fewer than fit
        assert prompt.startswith(t.history_label) and prompt.endswith(t.suffix)


def test_history_within_budget_is_whole(tokenizer):
    t = PromptTemplate.load("calrec")
    history = [Item(str(i), f"Thing {i}") for i in range(5)]
    assert t.render_history(history, tokenizer, max_tokens=1000) == t.render_history(history)
    assert t.render_history([], tokenizer, max_tokens=100) == t.history_label + t.suffix


def test_newest_item_alone_too_long_is_cut(tokenizer):
    t = PromptTemplate.load("calrec")
    prompt = t.render_history([Item("0", "old"), Item("1", "word " * 500)], tokenizer, max_tokens=60)
    assert 55 <= _count(tokenizer, prompt) <= 60  # cut to what fits, not far below
    assert prompt.startswith(t.history_label + t.item_label + "Title: word word") and prompt.endswith(t.suffix)
    assert "Title: old" not in prompt


def test_budget_without_tokenizer_is_approximate_in_characters():
    t = PromptTemplate.load("calrec_compact")
    history = [Item(str(i), f"Item {i} " + "x" * 40) for i in range(50)]
    prompt = t.render_history(history, max_tokens=100)
    assert len(prompt) <= 4 * 100 and "Item 49 " in prompt and "Item 0 " not in prompt


def test_budget_too_small_for_fixed_text_is_an_error(tokenizer):
    t = PromptTemplate.load("calrec")
    with pytest.raises(GenrecError, match="too small"):
        t.render_history([Item("1", "A")], tokenizer, max_tokens=5)
    with pytest.raises(GenrecError, match="target"):
        t.render_example([Item("1", "A")], Item("2", "B " * 200), tokenizer, max_tokens=40)


def test_unknown_template_lists_available():
    with pytest.raises(GenrecError, match="available: .*calrec"):
        PromptTemplate.load("nope")


def test_bad_template_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: bad\nterminator: x\n")
    with pytest.raises(GenrecError, match="bad.yaml.*attributes|attributes"):
        PromptTemplate.load(tmp_path / "bad.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(GenrecError, match="invalid YAML"):
        PromptTemplate.load(tmp_path / "broken.yaml")


def test_esr_prompts():
    item = Item("1", "Lab Gloves", brand="Acme", categories=("Lab", "Safety"), price="$9.99",
                description="Nitrile. " * 100)
    text = esr_item_text(item)
    assert text.startswith("The item has following attributes: name is Lab Gloves; brand is Acme; price is $9.99. "
                           "The item has following features: Lab, Safety. The item has following descriptions: "
                           "Nitrile. Nitrile.")
    assert text.endswith("....") and len(text) < 600  # description capped
    assert esr_user_text(["A", " B  c "]) == ("The user has purchased the following items: A; B c. "
                                             "Please summarize the preference of this user.")
    many = esr_user_text([f"T{i}" for i in range(80)])
    assert "T29;" not in many and "T30; " in many and "T79." in many  # the newest 50 titles
