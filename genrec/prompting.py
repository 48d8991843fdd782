"""Text templates that turn items and histories into prompts (CALRec, LLM-ESR).

The wording lives in YAML files under ``prompts/`` (shipped inside the wheel as
``genrec/prompts``), so it can be changed without touching code. Rendering fits a token
budget by dropping the oldest history items first and never cuts the target.
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
    """A CALRec-style template: history label, item label, attribute prefixes, suffix, terminator."""

    name: str
    attributes: list[Attribute]
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
            return cls(attributes=attrs, source_text=text, **data)
        except (KeyError, TypeError) as e:
            raise GenrecError(f"prompt template {name_or_path}: bad or missing setting: {e}") from None

    def fingerprint(self) -> str:
        return hashlib.sha256(self.source_text.encode()).hexdigest()[:16]

    # -- items ---------------------------------------------------------------------------
    def _value(self, item: Item, attr: Attribute) -> str | None:
        if attr.field == "categories":
            path = list(item.categories)
            if self.category_levels:
                path = path[-self.category_levels:]
            value = self.category_separator.join(path) if path else None
        else:
            value = getattr(item, attr.field, None)
        if value is None:
            return None
        value = _cap(_one_line(str(value)), attr.max_chars)
        return value or None

    def render_item(self, item: Item) -> str:
        """One line; attributes the item lacks are left out, never rendered as "None"."""
        parts = []
        for attr in self.attributes:
            value = self._value(item, attr)
            if value is not None:
                parts.append(attr.prefix + value)
        return _cap(self.attribute_separator.join(parts), self.max_item_chars)

    def render_target(self, item: Item) -> str:
        """The text the model learns to generate: the item, then the terminator. Never cut."""
        return self.target_label + self.render_item(item) + self.terminator

    def parse_target(self, text: str) -> dict[str, str]:
        """Inverse of :meth:`render_target`, tolerant of a missing terminator and trailing junk."""
        if self.terminator and self.terminator in text:
            text = text.split(self.terminator, 1)[0]
        text = text.strip()
        label = self.target_label.strip()
        if label and text.startswith(label):
            text = text[len(label):].strip()
        prefixed = [a for a in self.attributes if a.prefix.strip()]
        if prefixed:
            alternatives = "|".join(re.escape(a.prefix) for a in prefixed)
            chunks = re.split(rf"{re.escape(self.attribute_separator)}(?=(?:{alternatives}))", text)
        else:
            chunks = [text]
        out: dict[str, str] = {}
        bare = next((a for a in self.attributes if not a.prefix.strip()), None)
        for chunk in chunks:
            attr = next((a for a in prefixed if chunk.startswith(a.prefix)), None)
            if attr is not None:
                out.setdefault(attr.field, chunk[len(attr.prefix):].strip())
            elif bare is not None and bare.field not in out and chunk.strip():
                out[bare.field] = chunk.strip()
        return out

    # -- histories -----------------------------------------------------------------------
    def _history_text(self, lines: Sequence[str]) -> str:
        return self.history_label + "".join(self.item_label + line + "\n" for line in lines) + self.suffix

    def render_history(self, items: Sequence[Item], tokenizer: Tokenizer | None = None,
                       max_tokens: int | None = None, reserve_tokens: int = 0) -> str:
        """The prompt: label, the items oldest first, the suffix.

        With a budget (``max_tokens``, default the template's), the oldest items are dropped
        until the prompt plus ``reserve_tokens`` fits. Token counts are exact with a
        tokenizer, else estimated at 4 characters a token. If even the newest item alone
        does not fit, it is kept, cut to what fits.
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
        # Estimate per-line cost, take the longest newest-first run that fits, then verify exactly.
        overhead = count(self._history_text([]))
        costs = [count(self.item_label + line + "\n") for line in lines]
        keep, total = 0, overhead
        for c in reversed(costs):
            if total + c > avail:
                break
            total += c
            keep += 1
        keep = max(keep, 1) if lines else 0
        while keep > 1 and count(self._history_text(lines[len(lines) - keep:])) > avail:
            keep -= 1
        kept = lines[len(lines) - keep:] if keep else []
        text = self._history_text(kept)
        if keep == 1 and count(text) > avail:  # the newest item alone is too long: cut it
            line = kept[0]
            while line and count(self._history_text([line])) > avail:
                line = line[: int(len(line) * 0.8)]
            text = self._history_text([line] if line else [])
        return text

    def render_example(self, history: Sequence[Item], target: Item, tokenizer: Tokenizer | None = None,
                       max_tokens: int | None = None) -> tuple[str, str]:
        """(prompt, target) for training: the budget covers both; the target is never cut."""
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
    value: Any = getattr(item, name, None)
    if name == "categories":
        value = ", ".join(item.categories) if item.categories else None
    if value is None:
        return None
    value = _cap(_one_line(str(value)), limit)
    return value or None


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
