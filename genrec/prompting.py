"""Text templates that turn items and histories into prompts (CALRec, LLM-ESR).

The wording lives in YAML files under ``prompts/`` (shipped inside the wheel as
``genrec/prompts``), so it can be changed without touching code. Rendering fits a token
budget by dropping the oldest history items first and never cuts the target.

Terminator. The shipped CALRec templates end the target with a newline. Every attribute value
is collapsed to one line (whitespace runs become one space), so a newline can never occur
inside item text, and the SmolLM2 tokenizer always encodes ``"\n"`` as one token of its own
(id 198, never merged into ``"\n\n"``), so stopping at the string and stopping at the token
agree on every backend; a pretrained model also ends a line by itself, so even the untuned
model stops. A custom template may use another terminator: its text is then removed from
attribute values so a rendered target still contains it exactly once, at the end.

Token budgets count the prompt and the target each tokenised on its own, without special
tokens: that is how the training collator and the generators see them (the prompt encoded,
the target generated after it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import yaml

from genrec.data.catalog import Item
from genrec.errors import GenrecError


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def template_dirs() -> list[Path]:
    """Where named templates are looked up: the installed package first, then the checkout."""
    dirs = []
    try:
        packaged = resources.files("genrec") / "prompts"
        if packaged.is_dir():
            dirs.append(Path(str(packaged)))
    except (ModuleNotFoundError, TypeError):
        pass
    repo = Path(__file__).resolve().parent.parent / "prompts"
    if repo.is_dir():
        dirs.append(repo)
    return dirs


def available_templates() -> list[str]:
    return sorted({p.stem for d in template_dirs() for p in d.glob("*.yaml")})


def _read_template_file(name_or_path: str | Path) -> tuple[dict, str]:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        found = next((d / f"{name_or_path}.yaml" for d in template_dirs() if (d / f"{name_or_path}.yaml").exists()),
                     None)
        if found is None:
            raise GenrecError(f"prompt template {str(name_or_path)!r} not found; available: "
                              f"{', '.join(available_templates()) or 'none'} (or pass a .yaml path)")
        path = found
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GenrecError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise GenrecError(f"{path}: a template must be a mapping")
    return data, text


def _one_line(text: str) -> str:
    return " ".join(text.split())


# Placeholders that exports write for an absent value; rendered, they would teach the model
# to generate "Brand: nan". Treated exactly like a missing attribute.
_MISSING = frozenset({"", ".", "-", "none", "nan", "null", "n/a", "[]"})


def _present(value: Any) -> str | None:
    """The value as one clean line, or None if it is absent or a placeholder for absence."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = _one_line(str(value))
    return None if text.lower() in _MISSING else text


def _cap(text: str, limit: int | None) -> str:
    if limit and len(text) > limit:
        return text[: max(limit - 3, 0)].rstrip() + "..."
    return text


@dataclass
class Attribute:
    field: str
    prefix: str = ""
    max_chars: int | None = None


@dataclass
class PromptTemplate:
    """A CALRec-style template: history label, item label, attribute prefixes, suffix, terminator.

    ``target_attributes`` (optional) is what the model learns to *generate* — e.g. only the
    title, or title and brand — while the history keeps the richer ``attributes``: a shorter
    target makes a training sequence shorter and generation stop sooner, and grounding only
    ever needed those fields. Unset, the target is the item rendered like a history line.
    """

    name: str
    attributes: list[Attribute]
    target_attributes: list[Attribute] | None = None
    history_label: str = ""
    item_label: str = ""
    attribute_separator: str = " | "
    category_separator: str = " > "
    category_levels: int = 0
    max_item_chars: int | None = None
    suffix: str = ""
    target_label: str = ""
    terminator: str = "\n"
    max_tokens: int | None = None
    source_text: str = field(default="", repr=False)

    @classmethod
    def load(cls, name_or_path: str | Path) -> PromptTemplate:
        data, text = _read_template_file(name_or_path)
        try:
            attrs = [Attribute(**a) for a in data.pop("attributes")]
            target = data.pop("target_attributes", None)
            target_attrs = [Attribute(**a) for a in target] if target else None
            return cls(attributes=attrs, target_attributes=target_attrs, source_text=text, **data)
        except (KeyError, TypeError) as e:
            raise GenrecError(f"prompt template {name_or_path}: bad or missing setting: {e}") from None

    def fingerprint(self) -> str:
        return hashlib.sha256(self.source_text.encode()).hexdigest()[:16]

    # -- items ---------------------------------------------------------------------------
    def _value(self, item: Item, attr: Attribute) -> str | None:
        """The rendered text of one attribute (capped), or None when the item lacks it."""
        if attr.field == "categories":
            path = [c for c in (_present(c) for c in item.categories) if c]
            if self.category_levels:
                path = path[-self.category_levels:]
            value = self.category_separator.join(path) if path else None
        else:
            value = _present(getattr(item, attr.field, None))
        if value is None:
            return None
        stop = self.terminator.strip()
        if stop and stop in value:  # a custom terminator must not occur inside item text
            value = _one_line(value.replace(stop, " "))
        value = _cap(value, attr.max_chars)
        return value or None

    def _line(self, item: Item, attributes: Sequence[Attribute]) -> str:
        parts = []
        for attr in attributes:
            value = self._value(item, attr)
            if value is not None:
                parts.append(attr.prefix + value)
        return _cap(self.attribute_separator.join(parts), self.max_item_chars)

    def render_item(self, item: Item) -> str:
        """One history line; attributes the item lacks are left out (no "None", "nan" or bare prefix).

        Each attribute is capped by its ``max_chars``, the whole line by ``max_item_chars``.
        """
        return self._line(item, self.attributes)

    @property
    def generated_attributes(self) -> list[Attribute]:
        """The attributes of a target line: ``target_attributes`` when set, else ``attributes``."""
        return self.target_attributes or self.attributes

    def render_target_item(self, item: Item) -> str:
        """The item as the model writes it (no label, no terminator): what BM25 grounding indexes."""
        return self._line(item, self.generated_attributes)

    def render_target(self, item: Item) -> str:
        """The text the model learns to generate: the target line, then the terminator. Never cut."""
        return self.target_label + self.render_target_item(item) + self.terminator

    def parse_target(self, text: str) -> dict[str, str]:
        """Inverse of :meth:`render_target`: ``{field: value}`` for the attributes found.

        Tolerant of what a model generates: a missing terminator, anything after the
        terminator, a missing target label, and extra or missing spaces around the attribute
        separator and after a prefix. The first occurrence of an attribute wins.
        """
        if self.terminator and self.terminator in text:
            text = text.split(self.terminator, 1)[0]
        text = text.strip()
        label = self.target_label.strip()
        if label and text.startswith(label):
            text = text[len(label):].strip()
        attributes = self.generated_attributes
        prefixed = [a for a in attributes if a.prefix.strip()]
        sep = self.attribute_separator.strip()
        if prefixed:
            alternatives = "|".join(re.escape(a.prefix.strip()) for a in prefixed)
            sep_re = rf"\s*{re.escape(sep)}\s*" if sep else r"\s+"
            chunks = re.split(rf"{sep_re}(?=(?:{alternatives}))", text)
        else:
            chunks = [text]
        out: dict[str, str] = {}
        bare = next((a for a in attributes if not a.prefix.strip()), None)
        for chunk in chunks:
            chunk = chunk.strip()
            attr = next((a for a in prefixed if chunk.startswith(a.prefix.strip())), None)
            if attr is not None:
                out.setdefault(attr.field, chunk[len(attr.prefix.strip()):].strip())
            elif bare is not None and bare.field not in out and chunk:
                out[bare.field] = chunk
        return out

    # -- histories -----------------------------------------------------------------------
    def _history_text(self, lines: Sequence[str]) -> str:
        return self.history_label + "".join(self.item_label + line + "\n" for line in lines) + self.suffix

    def render_history(self, items: Sequence[Item], tokenizer: Tokenizer | None = None,
                       max_tokens: int | None = None, reserve_tokens: int = 0) -> str:
        """The prompt: history label, the items oldest first (one line each), the suffix.

        With a budget (``max_tokens``, default the template's ``max_tokens``; None = no limit)
        the oldest items are dropped until the prompt's tokens plus ``reserve_tokens`` fit.
        Counts are exact with a tokenizer (``encode(text, add_special_tokens=False)``), else
        estimated at 4 characters a token. The kept items are always the newest, contiguous.
        If even the newest item alone does not fit, it is kept, cut at the end to what fits,
        so the prompt never exceeds the budget. The label and the suffix are never cut: a
        budget too small for them (plus the reserve) raises :class:`GenrecError`.
        """
        budget = self.max_tokens if max_tokens is None else max_tokens
        lines = [self.render_item(it) for it in items]
        if budget is None:
            return self._history_text(lines)

        def count(text: str) -> int:
            if tokenizer is None:
                return (len(text) + 3) // 4
            return len(tokenizer.encode(text, add_special_tokens=False))

        avail = budget - reserve_tokens
        fixed = count(self._history_text([]))
        if fixed > avail:
            raise GenrecError(f"prompt budget of {budget} tokens is too small for template {self.name!r}: "
                              f"its label and suffix take {fixed}"
                              + (f" and the target {reserve_tokens}" if reserve_tokens else "")
                              + "; raise max_tokens or cap item text (max_item_chars)")
        # Newest first, add each line's own cost while it fits (lines beyond are never encoded),
        # then verify on the joined text: BPE merges at the joins may differ slightly.
        keep, total = 0, fixed
        for line in reversed(lines):
            total += count(self.item_label + line + "\n")
            if total > avail:
                break
            keep += 1
        while keep > 0 and count(self._history_text(lines[len(lines) - keep:])) > avail:
            keep -= 1
        if keep == 0 and lines:
            return self._cut_newest(lines[-1], count, avail)
        return self._history_text(lines[len(lines) - keep:])

    def history_span(self, prompt: str) -> tuple[int, int]:
        """(start, end) characters of the item lines in a :meth:`render_history` prompt: the span
        whose states CALRec's history-mean v_U pools (the label and the suffix excluded)."""
        start = len(self.history_label) if prompt.startswith(self.history_label) else 0
        end = len(prompt) - len(self.suffix) if prompt.endswith(self.suffix) else len(prompt)
        return start, end

    def _cut_newest(self, line: str, count, avail: int) -> str:
        """The prompt with only the newest item, cut to the longest prefix that fits."""
        lo, hi = 0, len(line)  # invariant: a prefix of length lo fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(self._history_text([line[:mid].rstrip()])) <= avail:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            raise GenrecError(f"prompt budget too small for template {self.name!r}: not even part of one "
                              f"history item fits; raise max_tokens")
        return self._history_text([line[:lo].rstrip()])

    def render_example(self, history: Sequence[Item], target: Item, tokenizer: Tokenizer | None = None,
                       max_tokens: int | None = None) -> tuple[str, str]:
        """(prompt, target text) for training.

        The budget covers both, each counted on its own (as the collator tokenises them):
        tokens(prompt) + tokens(target) <= max_tokens. The target is never cut; the
        history gives way, oldest items first.
        """
        target_text = self.render_target(target)
        reserve = (len(tokenizer.encode(target_text, add_special_tokens=False)) if tokenizer is not None
                   else (len(target_text) + 3) // 4)
        return self.render_history(history, tokenizer, max_tokens, reserve_tokens=reserve), target_text


# -- LLM-ESR prompts -------------------------------------------------------------------------
_ESR_CACHE: dict[str, dict] = {}


def _esr(name: str) -> dict:
    if name not in _ESR_CACHE:
        _ESR_CACHE[name] = _read_template_file(name)[0]
    return _ESR_CACHE[name]


def _field_text(item: Item, name: str, limit: int | None = None) -> str | None:
    if name == "categories":
        path = [c for c in (_present(c) for c in item.categories) if c]
        value = ", ".join(path) if path else None
    else:
        value = _present(getattr(item, name, None))
    if value is None:
        return None
    return _cap(value, limit) or None


def esr_item_text(item: Item, template: str = "esr_item") -> str:
    """The LLM-ESR item prompt; sentences whose attributes are all missing are left out."""
    t = _esr(template)
    limit = t.get("max_description_chars")
    out = []
    for sentence in t["sentences"]:
        parts = []
        for part in sentence["parts"]:
            value = _field_text(item, part["field"], limit if part["field"] == "description" else None)
            if value is not None:
                parts.append(part["text"].format(value))
        if parts:
            out.append(sentence["text"] + sentence["joiner"].join(parts) + sentence["end"])
    return "".join(out).strip()


def esr_user_text(titles: Sequence[str], template: str = "esr_user") -> str:
    """The LLM-ESR user prompt from the titles of the user's (training) items, newest kept."""
    t = _esr(template)
    titles = [_one_line(x) for x in titles if x and x.strip()][-int(t.get("max_titles", 50)):]
    return t["prefix"] + t["title_separator"].join(titles) + t["suffix"]


def template_fingerprint(name_or_path: str | Path) -> str:
    """Hash of a template file's text (cache manifests change when the wording does)."""
    return hashlib.sha256(_read_template_file(name_or_path)[1].encode()).hexdigest()[:16]
