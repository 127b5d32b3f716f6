"""Helpers shared by the benchmarks: a throwaway App on a fresh database."""

from __future__ import annotations

import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot.app import App  # noqa: E402
from mailbot.config import parse_config  # noqa: E402


def bench_app(db_url: str | None = None, workdir: str | None = None, **over: object) -> App:
    """The shipped config on a fresh database (SQLite in a temp dir by default)."""
    work = Path(workdir or tempfile.mkdtemp(prefix="mailbot-bench-"))
    data = tomllib.loads((ROOT / "config.toml").read_text())
    data["templates_dir"] = str(ROOT / "templates")
    data["database"] = {"url": db_url or f"sqlite:///{work}/bench.db"}
    data["outbound"] = {"transport": "maildir", "path": str(work / "sent")}
    data["security"] = {"secret": "bench"}
    data["limits"] = {"ack_limit": 1000}
    data.update(over)
    return App.open(parse_config(data, str(work / "config.toml")), upgrade=True)
