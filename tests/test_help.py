"""`--help` that teaches: every command says what it does, explains each argument and
shows an example; `cases list` names the statuses, `cases extend` says business days."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from mailbot.cli.helptext import COMMANDS, subcommands
from mailbot.cli.main import _parser
from tests.conftest import ROOT

ALL = list(subcommands(_parser()))


def test_every_command_has_an_entry_and_no_entry_is_stale() -> None:
    paths = {path for path, _ in ALL}
    assert paths - set(COMMANDS) == set(), "add them to mailbot/cli/helptext.COMMANDS"
    assert set(COMMANDS) - paths == set()


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[p or "mailbot" for p, _ in ALL])
def test_each_command_describes_itself_explains_its_arguments_and_shows_an_example(
    path: str, parser: argparse.ArgumentParser,
) -> None:
    text = parser.format_help()
    assert parser.description and parser.description.split()[0] in text
    assert "examples:\n  mailbot " in text, text
    for line in text.split("examples:\n", 1)[1].splitlines():
        if line.strip() and not line.startswith("    "):  # a command, or a continued one
            assert line.startswith("  mailbot "), line
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {c.dest for c in action._choices_actions}
            assert listed == set(action.choices), f"{path}: no one-line help for {set(action.choices) - listed}"
            assert all(c.help for c in action._choices_actions)
        elif action.dest not in ("help", "version"):
            assert action.help, f"{path}: {action.option_strings or action.dest} has no help"


def test_the_statuses_and_business_days_are_named() -> None:
    helps = dict(ALL)
    listing = " ".join(helps["cases list"].format_help().split())
    for status in ("new", "acknowledged", "in_progress", "waiting_customer", "answered", "closed", "reexamination"):
        assert status in listing
    assert "business days" in helps["cases extend"].format_help()


def test_help_as_a_process() -> None:
    done = subprocess.run([sys.executable, "-m", "mailbot.cli", "cases", "extend", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0
    assert "business days" in done.stdout and "examples:\n  mailbot cases extend DK-2026-000042 10" in done.stdout
    version = subprocess.run([sys.executable, "-m", "mailbot.cli", "--version"], capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
    assert version.returncode == 0 and version.stdout.startswith("mailbot ")
