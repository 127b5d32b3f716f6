"""What the command handlers share to read input and print results."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_input(name: str) -> bytes:
    """The bytes of a file, or of standard input for `-`."""
    return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()


def print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))
