"""YAML files that map onto dataclasses, with command-line overrides.

Every script takes ``--config FILE.yaml`` plus ``key=value`` overrides (dotted keys reach
nested dataclasses: ``lora.r=16``). Unknown keys are errors that name the key and the file,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from genrec.errors import ConfigError

T = TypeVar("T")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot convert {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value) if not isinstance(value, str) else tp(float(value)) if tp is float else int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, converting types and rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (["a", "b"], 3), the value parsed as YAML (so 3, 0.1, true, [1,2] work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Read ``path`` (YAML) into ``cls`` and apply ``key=value`` overrides on top."""
    data: dict = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    for text in overrides or []:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return from_dict(cls, data, where)


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict (for saving the settings next to results)."""
    return dataclasses.asdict(obj)


def fill_missing(saved: Any, defaults: Any) -> Any:
    """``saved`` settings with each key they lack (at any depth) taken from ``defaults``: a setting
    added since they were saved defaults to the behaviour from before it existed, so settings saved
    by an older genrec compare and resume under a newer one."""
    if not isinstance(saved, dict) or not isinstance(defaults, dict):
        return saved
    return {**defaults, **{k: fill_missing(v, defaults.get(k)) for k, v in saved.items()}}


# -- help: every setting as the dotted key it takes, with its type, default and meaning ----------
@dataclasses.dataclass
class SettingHelp:
    key: str        # dotted, as typed on the command line (``lora.r``); ``[]`` marks list elements
    type: str
    default: str
    help: str


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment in ``cls``'s source: the ``# comment`` ending the field's line,
    else the ``#`` lines just above it. Empty when the source cannot be read (e.g. a REPL class)."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    trailing: dict[int, str] = {}
    own_line: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                (own_line if tok.line.strip().startswith("#") else trailing)[tok.start[0]] = text
    except (tokenize.TokenError, IndentationError):
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        text = next((trailing[n] for n in lines if n in trailing), "")
        if not text:
            above, n = [], node.lineno - 1
            while n in own_line:
                above.insert(0, own_line[n])
                n -= 1
            text = " ".join(above)
        if text:
            out[node.target.id] = text
    return out


def _comments(cls: type) -> dict[str, str]:
    """Comments of ``cls`` and its dataclass bases (a subclass's own comment wins)."""
    merged: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            merged.update(_field_comments(klass))
    return merged


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _dataclass_in(tp: Any) -> tuple[type | None, bool]:
    """(the dataclass a setting holds, whether it is a list of them), or (None, False)."""
    if dataclasses.is_dataclass(tp):
        return tp, False
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            found = _dataclass_in(a)
            if found[0] is not None:
                return found
    if origin in (list, tuple) and args and dataclasses.is_dataclass(args[0]):
        return args[0], True
    return None, False


_MISSING = object()


def _default_value(f: dataclasses.Field, instance: Any) -> Any:
    """The default of field ``f``: its value in ``instance`` (the enclosing default) when there
    is one, else the field's own default; ``_MISSING`` when required."""
    if instance is not None:
        return getattr(instance, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING


def _default_text(value: Any) -> str:
    if value is _MISSING:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "(section)"
    if isinstance(value, list | tuple) and value and dataclasses.is_dataclass(value[0]):
        text = f"[{len(value)} entries]"
    elif isinstance(value, list | tuple | dict):
        text = yaml.safe_dump(list(value) if isinstance(value, tuple) else value,
                              default_flow_style=True, width=10_000).strip()
    elif isinstance(value, str):
        text = repr(value) if value == "" or value != value.strip() else value
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_settings(cls: type, prefix: str = "", instance: Any = None) -> list[SettingHelp]:
    """Every setting of dataclass ``cls``, nested ones as dotted keys, in declaration order.

    The meaning is ``field(metadata={"help": ...})`` when given, else the field's comment in
    the class source; a field with neither still lists its type and default. Defaults of a
    nested section are those of the enclosing default (``instance``), where there is one.
    """
    hints = typing.get_type_hints(cls)
    comments = _comments(cls)
    out: list[SettingHelp] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}{f.name}"
        tp = hints.get(f.name, Any)
        value = _default_value(f, instance)
        meaning = str(f.metadata.get("help", "")) or comments.get(f.name, "")
        inner, is_list = _dataclass_in(tp)
        if inner is not None and not is_list:
            optional = type(None) in typing.get_args(tp)
            out.append(SettingHelp(key, _type_name(tp) if optional else "section", _default_text(value), meaning))
            out.extend(describe_settings(inner, key + ".", value if dataclasses.is_dataclass(value) else None))
        elif inner is not None:
            out.append(SettingHelp(key, f"list[{inner.__name__}]", _default_text(value), meaning))
            out.extend(describe_settings(inner, key + "[]."))
        else:
            out.append(SettingHelp(key, _type_name(tp), _default_text(value), meaning))
    return out


def settings_help(cls: type) -> str:
    """The settings table ``--help`` prints after the usage."""
    rows = describe_settings(cls)
    w_key = min(42, max([len("key"), *(len(r.key) + 2 for r in rows)]))
    w_type = min(22, max([len("type"), *(len(r.type) for r in rows)]))
    w_def = min(18, max([len("default"), *(len(r.default) for r in rows if r.type != "section")]))
    lines = [f"settings of {cls.__name__} (key=value after the options, dotted for nested; "
             "the --config YAML file uses the same names):", "",
             f"  {'key':<{w_key}}  {'type':<{w_type}}  {'default':<{w_def}}  meaning"]
    for r in rows:
        if r.type == "section":
            head = f"  {r.key + '.*':<{w_key}}  {'section':<{w_type}}  {'':<{w_def}}"
        else:
            head = f"  {r.key:<{w_key}}  {r.type:<{w_type}}  {r.default:<{w_def}}"
        lines.append(f"{head}  {r.help}".rstrip())
    lines.append("")
    lines.append("Values are read as YAML: lr=5e-5  flag=true  names=a,b  mapping='{a: 1}'.")
    if any("[]." in r.key for r in rows):
        lines.append("Keys with [] are fields of each entry of a list, e.g. "
                     "datasets='[{format: demo, name: electronics}]'.")
    return "\n".join(lines)


def build_parser(cls: type, description: str = "", prog: str | None = None, parser: Any = None):
    """The argparse parser of a settings dataclass: ``--config``, ``--verbose``, ``key=value``."""
    import argparse

    kwargs = dict(description=description, epilog=settings_help(cls),
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    if parser is None:
        parser = argparse.ArgumentParser(prog=prog, **kwargs)
    else:
        for k, v in kwargs.items():
            setattr(parser, k, v)
    parser.add_argument("--config", help="YAML file with settings (the keys listed below)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show library and engine logs on the console too (same as GENREC_LOG=debug)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings on top of the YAML file, dotted for nested (see below)")
    return parser


def apply_verbose(verbose: bool) -> None:
    """``--verbose`` sets ``GENREC_LOG=debug``, which genrec.console (and child processes) read."""
    import os

    if verbose:
        os.environ["GENREC_LOG"] = "debug"


def parse_args(cls: type[T], argv: list[str] | None = None, description: str = "") -> T:
    """The standard script entry: ``--config FILE`` plus ``key=value`` overrides; ``--help``
    lists every setting of ``cls``."""
    parser = build_parser(cls, description)
    args = parser.parse_args(argv)
    apply_verbose(args.verbose)
    try:
        return load_config(cls, args.config, args.overrides)
    except ConfigError as e:  # a bad setting is the user's to fix: one line naming it, no traceback
        parser.exit(2, f"{parser.prog}: error: {e}\n")
