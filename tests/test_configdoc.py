"""docs/configuration.md is generated from the config schema and cannot drift; the shipped
config.toml shows every section and every key (commented where it keeps its default)."""

from __future__ import annotations

import re
import subprocess
import sys

from mailbot.config import Config
from mailbot.ops import configdoc
from tests.conftest import ROOT

SHIPPED = (ROOT / "config.toml").read_text()


def schema_keys() -> dict[str, list[str]]:
    """Section path ("" for the top level, "brands.sla"…) -> its keys, from the schema."""
    out: dict[str, list[str]] = {}

    def walk(model: type, path: str) -> None:
        out[path] = []
        for name, field in configdoc._fields(model):
            inner = configdoc._model_of(field.annotation)
            if inner is None:
                out[path].append(name)
            else:
                walk(inner, f"{path}.{name}".lstrip("."))

    walk(Config, "")
    return out


def test_configuration_md_is_generated_from_the_schema() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == configdoc.render(), "docs/configuration.md is stale: run `make docs`"


def test_configuration_md_lists_every_key_with_type_default_and_meaning() -> None:
    doc = configdoc.render()
    for section, keys in schema_keys().items():
        titles = ["## Top level"] if not section else [f"## `[{section}]`", f"## `[[{section}]]`"]
        (title,) = [t for t in titles if t in doc]
        part = doc.split(title, 1)[1].split("\n## ", 1)[0]
        for key in keys:
            (row,) = [line for line in part.splitlines() if line.startswith(f"| `{key}` |")]
            cells = [c.strip() for c in row.strip("|").split(" | ")]
            assert len(cells) == 4 and all(cells), row
    assert "| `ack_limit` | integer, ≥ 0 | `5` | acknowledgements per sender per hour" in doc
    assert "| `prefix` | string | *required* |" in doc


def test_the_check_mode_fails_on_a_stale_file_as_a_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ok = subprocess.run([sys.executable, "-m", "mailbot.ops.configdoc", "--check"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_a_key_without_a_description_cannot_be_documented() -> None:
    from pydantic import create_model

    from mailbot.config import _Strict

    model = create_model("Undocumented", __base__=_Strict, new_key=(int, 1))
    try:
        list(configdoc._fields(model))
    except SystemExit as exc:
        assert "new_key has no description" in str(exc)
    else:
        raise AssertionError("an undocumented key was accepted")


def regions(text: str) -> dict[str, str]:
    """Section path -> the text under its header(s) in config.toml, commented headers included."""
    out: dict[str, str] = {"": ""}
    current = ""
    for line in text.splitlines():
        m = re.match(r"^\s*#?\s*\[\[?([a-z_.]+)\]\]?", line)
        if m:
            current = m.group(1)
            out.setdefault(current, "")
        out[current] = out.get(current, "") + line + "\n"
    return out


def test_the_shipped_config_shows_every_section_and_key() -> None:
    shown = regions(SHIPPED)
    missing = []
    for section, keys in schema_keys().items():
        if section not in shown:
            missing.append(f"[{section}]")
            continue
        missing += [f"{section}.{k}".lstrip(".") for k in keys if not re.search(rf"\b{k}\s*=", shown[section])]
    assert not missing, f"config.toml does not show: {missing} (add them, commented if they keep the default)"
