"""The package reads top-down like the data flow: a folder imports only the folders below
it (cli, web > ops > channels > ingest > cases > outgoing > mail > the ground floor:
app.py, config.py, db.py, models.py, business_days.py, exitcodes.py, blobs.py…). Every import counts,
those inside functions too: an import put off until call time is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "mailbot"
FLOORS = {"cli": 0, "web": 0, "ops": 1, "channels": 2, "ingest": 3, "cases": 4, "outgoing": 5, "mail": 6}
GROUND = len(set(FLOORS.values()))

# Upward imports not untangled yet: each is debt, and the list only shrinks (it is empty: keep it so).
KNOWN: set[tuple[str, str]] = set()


def floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS.get(parts[1], GROUND) if len(parts) > 1 else GROUND


def imports(path: Path) -> set[str]:
    """The mailbot modules (or packages) a file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailbot"):
            package = node.module == "mailbot" or node.module.removeprefix("mailbot.") in FLOORS
            if package:  # `from mailbot.cases import records`: the module named
                found.update(f"{node.module}.{a.name}" for a in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mailbot"))
    return found


def upward_imports() -> set[tuple[str, str]]:
    out = set()
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        out.update((module, target) for target in imports(path) if floor(target) < floor(module))
    return out


def test_no_module_imports_a_folder_above_its_own() -> None:
    new = upward_imports() - KNOWN
    assert not new, "imports of a folder above (see DESIGN.md, package layout): " + ", ".join(
        f"{m} -> {t}" for m, t in sorted(new))


def test_the_known_upward_imports_are_still_there() -> None:
    """When one is untangled, take it off KNOWN, so it cannot come back unnoticed."""
    assert KNOWN <= upward_imports()


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from mailbot.cases.records import log_event\n    import mailbot.ops.jobs\n"
                      "from mailbot.ingest import analysis\n")
    assert imports(module) == {"mailbot.cases.records", "mailbot.ops.jobs", "mailbot.ingest.analysis"}
    assert floor("mailbot.cases.records") < floor("mailbot.outgoing.outbox") < floor("mailbot.db")
