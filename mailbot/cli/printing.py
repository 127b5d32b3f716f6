"""What the command handlers share to read input and print results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mailbot.cases.queue import QueuePage
from mailbot.cases.views import late, when


def read_input(name: str) -> bytes:
    """The bytes of a file, or of standard input for `-`."""
    return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()


def print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def print_queue(page: QueuePage, what: str = "") -> None:
    """`cases list`: a header, one line per case (local deadline, how late), and a count."""
    f = page.filter
    print(f"{'REF':<15} {'CUSTOMER':<30} {'CATEGORY':<12} {'STATUS':<16} {'ASSIGNEE':<26} "
          f"{'DUE':<20} OVERDUE")
    for r in page.rows:
        who = r.customer_name or r.customer_email or "-"
        urgent = "!" if r.priority == "urgent" else " "
        print(f"{r.ref:<15} {who[:30]:<30} {(r.category or '-')[:12]:<12} {r.status[:16]:<16} "
              f"{(r.assignee or '-')[:26]:<26} {when(r.due_local):<20} {urgent}{late(r.overdue) or '-'}")
    what = what or f"status {f.status}" + (f", brand {f.brand}" if f.brand else "")
    shown = f"{page.first}-{page.last} of {page.total_text}" if page.rows else f"0 of {page.total_text}"
    print(f"{page.total_text} case{'s' if page.total != 1 or page.capped else ''} ({what}); showing {shown}"
          + (f"; next: --page {page.page + 1}" if page.has_next else ""))
