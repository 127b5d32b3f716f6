"""docs/configuration.md, generated from the config schema (mailbot/config.py).

    python -m mailbot.ops.configdoc          # rewrite docs/configuration.md
    python -m mailbot.ops.configdoc --check  # exit 1 if it is stale (what the test does)

Every key is listed with its type, default and meaning (its `description` in the
schema: a key without one is an error here, so a new key cannot go undocumented).
"""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mailbot.config import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

HEADER = """\
# Configuration reference

<!-- Generated from mailbot/config.py by `make docs` (python -m mailbot.ops.configdoc).
     Do not edit by hand: tests/test_configdoc.py fails when this file is stale. -->

Every key of `config.toml`, with its type, its default and what it means. The
shipped `config.toml` shows each section with comments; `mailbot check-config`
validates a file and names the line, the key and the closest valid key of each
problem. Relative paths are relative to the config file. Secrets never go in the
file: keys ending in `_env` name an environment variable, keys ending in `_file`
a file to read (see docs/operations.md).

A key without a default (marked *required*) must be written. A table of tables
(`[[brands]]`, `[[agents]]`, `[[imap]]`) may be repeated.
"""

_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string", date: "date (YYYY-MM-DD)"}
_PLURAL = {"boolean": "booleans", "integer": "integers", "number": "numbers", "string": "strings",
           "date (YYYY-MM-DD)": "dates"}


def render() -> str:
    """The whole document."""
    parts = [HEADER]
    top = [(n, f) for n, f in _fields(Config) if _model_of(f.annotation) is None]
    parts.append(_section("Top level", "Keys outside any table.", top))
    for name, field in _fields(Config):
        model = _model_of(field.annotation)
        if model is not None:
            parts.extend(_model_sections(name, field, model))
    return "\n".join(parts)


def _model_sections(path: str, field: FieldInfo, model: type[BaseModel]) -> Iterator[str]:
    array = get_origin(field.annotation) is list
    title = f"`[[{path}]]`" if array else f"`[{path}]`"
    doc = " ".join((model.__doc__ or "").split())
    own = [(n, f) for n, f in _fields(model) if _model_of(f.annotation) is None]
    yield _section(title, doc, own)
    for name, sub in _fields(model):
        inner = _model_of(sub.annotation)
        if inner is not None:
            yield from _model_sections(f"{path}.{name}", sub, inner)


def _section(title: str, doc: str, fields: list[tuple[str, FieldInfo]]) -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in fields:
        rows.append(f"| `{name}` | {_type(field)} | {_default(field)} | {_cell(field.description or '')} |")
    return f"## {title}\n\n{doc}\n\n" + "\n".join(rows) + "\n"


def _fields(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        if not field.description:
            raise SystemExit(f"{model.__name__}.{name} has no description: give it one in mailbot/config.py")
        yield name, field


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _type(field: FieldInfo) -> str:
    text = _type_name(field.annotation)
    for m in field.metadata:  # annotated_types' Ge(ge=0), Gt, Le, Lt, MinLen
        for attr, words in (("ge", "≥ {}"), ("gt", "> {}"), ("le", "≤ {}"), ("lt", "< {}"),
                            ("min_length", "at least {}")):
            if getattr(m, attr, None) is not None:
                text += ", " + words.format(getattr(m, attr))
    return text


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + (" (optional)" if len(inner) < len(args) else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{_toml(a)}`" for a in args)
    if origin is list:
        inner = _type_name(args[0])
        if get_origin(args[0]) is Literal:
            return "list, each " + inner
        return "list of " + _PLURAL.get(inner, inner)
    if origin is dict:
        return "table of " + _PLURAL.get(_type_name(args[1]), _type_name(args[1]))
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "*required*"
    if field.default is None:
        return "unset"
    return f"`{_toml(field.default)}`"


def _toml(value: Any) -> str:
    """A value as it is written in config.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailbot.ops.configdoc",
                                     description="Write docs/configuration.md from the config schema.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale, write nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
