"""Terminal escapes in CLI output (#27 item 9): a customer's address, name, subject or
text holding `ESC ] 0 ; … BEL` or `ESC [ … J` reaches the terminal as visible text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailbot.cli.terminal import REPLACEMENT, printable
from tests.conftest import config_data
from tests.mails import mail
from tests.test_cli import Result, cfg, cli, ingest_mail, subprocess_cli, write_config  # noqa: F401

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m"
CONTROLS = set(map(chr, [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)])) | {"\u202e"}


def hostile_mail() -> bytes:
    """Escapes in the body (shown by `cases show`) and a right-to-left override in the name."""
    raw = mail(subject="Virement", body=f"Bonjour{ESCAPES}owned, tout va bien.\x1b[1A\x1b[2K\nMarie")
    return raw.replace(b"From: Marie Dupont", b"From: Marie \xe2\x80\xae Dupont")


def test_cases_list_and_show_print_no_control_character(cli: Callable[..., Result], tmp_path: Path) -> None:  # noqa: F811
    ref = ingest_mail(cli, tmp_path, hostile_mail())
    for args in (("cases", "list"), ("cases", "show", ref), ("cases", "search", "Virement")):
        r = cli(*args)
        assert r.rc == 0, r.err
        assert not CONTROLS & set(r.out), (args, r.out)
    shown = cli("cases", "show", ref).out
    assert f"Bonjour{REPLACEMENT}]0;owned{REPLACEMENT}{REPLACEMENT}[2J" in shown


@pytest.mark.slow  # a fresh process: left out by `make test-fast`
def test_a_fresh_process_prints_the_text_without_its_escapes(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path / "config.toml", config_data(tmp_path, db_url))
    (tmp_path / "m.eml").write_bytes(hostile_mail())
    p = subprocess_cli("--config", str(config), "ingest", str(tmp_path / "m.eml"))
    assert p.returncode == 0, p.stderr
    p = subprocess_cli("--config", str(config), "cases", "show", p.stdout.split()[1].decode())
    out = p.stdout.decode()
    assert p.returncode == 0 and "owned" in out and "\x1b" not in out and "\x07" not in out


def test_printable_keeps_text_lines_and_tabs() -> None:
    assert printable("Réclamation\tn° 12\nligne 2") == "Réclamation\tn° 12\nligne 2"
    assert printable("a\x1b[2Jb\rc\u202ed") == f"a{REPLACEMENT}[2Jb{REPLACEMENT}cd"
    assert printable("a,b\r\nc\x07,d\r\n") == f"a,b\r\nc{REPLACEMENT},d\r\n"  # CSV's line ends
