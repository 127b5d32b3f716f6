"""Running `mailbot run` as a real process in tests: config file, free port, start/stop by PID."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, config_data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(tmp_path: Path, port: int, extra: str = "", *, max_files: int | None = None,
                 **over: object) -> subprocess.Popen[bytes]:
    """Write tmp_path/config.toml and start `mailbot run` on it; returns once it listens.
    `max_files`: the process's limit of open files (RLIMIT_NOFILE), as LimitNOFILE sets it."""
    smtp = {**over.pop("smtp", {}), "port": port}  # type: ignore[dict-item]
    data = config_data(tmp_path, smtp=smtp, **over)
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(data) + extra)

    def limit() -> None:
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

    proc = subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "run"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=limit)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "daemon died")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("daemon did not listen in 20 s")


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "",
               every: float = 0.05) -> None:
    """Poll with a deadline (no bare sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(every)


def to_toml(data: dict) -> str:
    """A tiny TOML writer for test configs (tables, arrays of tables, scalars, lists)."""
    def scalar(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {scalar(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return json.dumps(str(v), ensure_ascii=False)

    lines: list[str] = []

    def table(prefix: str, d: dict, header: str | None) -> None:
        if header:
            lines.append(header)
        nested = []
        for k, v in d.items():
            if isinstance(v, dict) and not (prefix == "" and False):
                nested.append((k, v))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                nested.append((k, v))
            else:
                lines.append(f"{json.dumps(k)} = {scalar(v)}")
        for k, v in nested:
            name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
            if isinstance(v, dict):
                table(name, v, f"[{name}]")
            else:
                for item in v:
                    table(name, item, f"[[{name}]]")

    table("", data, None)
    out = "\n".join(lines) + "\n"
    tomllib.loads(out)  # self-check
    return out


class StderrReader:
    """Collect a process's stderr lines in a thread (a full pipe would block it)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def records(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines) if line.strip()]

    def has(self, msg: str) -> bool:
        return any(r.get("msg") == msg for r in self.records())

    def join(self) -> str:
        self._thread.join(10)
        return "\n".join(self.lines)
