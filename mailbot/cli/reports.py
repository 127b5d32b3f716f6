"""`mailbot stats` and `mailbot register export` (the complaint register: CSV, or XLSX for
the spreadsheets regulators and auditors work in)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import IO, Any

from mailbot import db
from mailbot.app import App
from mailbot.cases import register
from mailbot.exitcodes import EX_OK


def compute_stats(app: App) -> dict[str, Any]:
    with db.read_scope(app.engine) as s:
        return register.stats(s, app)


def print_stats(app: App, as_json: bool) -> int:
    stats = compute_stats(app)
    if as_json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return EX_OK
    t = stats["total"]
    print(f"{t['count']} cases ({t['rounds']} rounds); open {t['open']}, overdue {t['overdue']}; "
          f"answered {t['answered']}, on time {t['answered_on_time']}: {_pct(t['answered_within_deadline'])} "
          "of the rounds answered or past their date")
    for dim, groups in stats["by"].items():
        print(f"\nby {dim}:")
        for key, g in groups.items():
            print(f"  {key:<26} {g['count']:>6} cases  open {g['open']:>5}  overdue {g['overdue']:>5}  "
                  f"ack median {_num(g['median_hours_to_ack']):>7} h  "
                  f"answer median {_num(g['median_hours_to_answer']):>7} h  "
                  f"on time {_pct(g['answered_within_deadline'])}")
    return EX_OK


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f} %"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def export_register(app: App, out: IO[str]) -> None:
    """The register as CSV (one line per round; kept after retention purges)."""
    w = csv.DictWriter(out, fieldnames=register.COLUMNS)
    w.writeheader()
    with db.read_scope(app.engine) as s:
        w.writerows(register.rows(s, app))


def register_xlsx(app: App) -> bytes:
    """The register as an Excel workbook: one sheet, a header row frozen and filtered."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    with db.read_scope(app.engine) as s:
        rows = register.rows(s, app)
    wb = Workbook()
    ws = wb.active
    ws.title = "register"
    ws.append(list(register.COLUMNS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([row[c] for c in register.COLUMNS])
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions
    for i, name in enumerate(register.COLUMNS, 1):
        width = max([len(name)] + [len(r[name]) for r in rows])
        ws.column_dimensions[ws.cell(1, i).column_letter].width = min(width + 2, 40)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def cmd_export(app: App, fmt: str, out: str | None) -> int:
    """`register export [--format csv|xlsx] [--out FILE]` (xlsx to standard output only
    when it is not a terminal)."""
    if fmt == "xlsx":
        data = register_xlsx(app)
        if out:
            Path(out).write_bytes(data)
        elif sys.stdout.isatty():
            print("mailbot: an xlsx file is binary: give --out FILE or redirect the output", file=sys.stderr)
            return 2
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return EX_OK
    if out:
        with open(out, "w", newline="", encoding="utf-8") as f:
            export_register(app, f)
    else:
        export_register(app, sys.stdout)
    return EX_OK
