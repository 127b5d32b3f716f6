"""The command line (a contract: see README and DESIGN.md).

Exit codes: 0 done, 2 usage/config error, 65 data error (quarantined),
75 temporary failure (retry later), 1 anything else.

This module imports only the standard library at first: `mailbot ingest` hands its
mail to a running daemon (mailbot.pipe) without ever importing the config's
validation, the database layer or the parsers; every other command, and `ingest`
when no daemon answers, imports what it needs in `main`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from mailbot.cases.statuses import STATUSES
from mailbot.cli.helptext import teach
from mailbot.exitcodes import EX_DATAERR, EX_OK, EX_TEMPFAIL, EX_USAGE

if TYPE_CHECKING:
    from mailbot.config import Config

DEFAULT_CONFIG = os.environ.get("MAILBOT_CONFIG", "config.toml")
FORMATS = ("json", "text")  # mailbot.ops.logs.FORMATS (not imported here: see the module docstring)

Handler = Callable[[argparse.Namespace, "Config"], int]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mailbot")
    p.add_argument("--version", action=_Version, help="show the installed version and exit")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="path of config.toml (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-format", choices=FORMATS, default=None,
                   help="json (one object per line) or text; default: json under systemd or when "
                        "stderr is not a terminal, text at a terminal")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="the daemon: listeners, pollers, scheduler, dispatcher")
    sub.add_parser("check-config", help="validate config and render every template")
    dbp = sub.add_parser("db", help="database maintenance")
    dbp.add_argument("action", choices=["upgrade"])

    ing = sub.add_parser("ingest", help="ingest one raw message (MTA pipe transport)")
    ing.add_argument("file", nargs="?", default="-", help="file, or - for standard input")
    ing.add_argument("--recipient", "-r", action="append", default=[], help="envelope recipient")
    ing.add_argument("--sender", "-f", default=None, help="envelope sender (return path)")

    imp = sub.add_parser("import", help="import an mbox file or a Maildir backlog")
    imp.add_argument("path")
    imp.add_argument("--brand", default=None, help="brand of the mailbox (default: from recipients)")

    cases = sub.add_parser("cases", help="list, show, create and act on cases")
    csub = cases.add_subparsers(dest="action", required=True)
    cl = csub.add_parser("list", help="the work queue, soonest deadline first (local times)")
    cl.add_argument("--status", default="open",
                    help="'open' (default: every case still running), 'all', or one status: "
                         + ", ".join(STATUSES))
    cl.add_argument("--brand")
    cl.add_argument("--mine", metavar="AGENT", help="AGENT's work: assigned to them, or unassigned in their brands")
    cl.add_argument("--assignee", metavar="AGENT", help="assigned to AGENT ('none': to nobody)")
    cl.add_argument("--overdue", action="store_true", help="past their deadline")
    cl.add_argument("--due-today", action="store_true", help="due today (in each brand's time zone)")
    cl.add_argument("--sort", default="due", choices=["due", "received", "updated"])
    cl.add_argument("--page", type=int, default=1)
    cl.add_argument("--limit", type=int, default=50, help="cases per page (at most 500)")
    cl.add_argument("--json", action="store_true")
    cs = csub.add_parser("show", help="a case: messages' text, notes, attachments, timeline")
    cs.add_argument("ref")
    cs.add_argument("--full", action="store_true", help="also the quoted history of each message")
    cs.add_argument("--json", action="store_true")
    cse = csub.add_parser("search", help="cases by reference, customer, subject or any word of their messages")
    cse.add_argument("text")
    cse.add_argument("--status", default="all", help="'open', 'all' (default), or one status: " + ", ".join(STATUSES))
    cse.add_argument("--page", type=int, default=1)
    cse.add_argument("--limit", type=int, default=50, help="cases per page (at most 500)")
    cse.add_argument("--json", action="store_true")
    cat = csub.add_parser("attachment", help="save the N-th attachment of a case (as `cases show` numbers them)")
    cat.add_argument("ref")
    cat.add_argument("n", type=int)
    cat.add_argument("--out", required=True, help="file (or directory) to write")
    cat.add_argument("--force", action="store_true", help="replace an existing file")
    cn = csub.add_parser("new", help="register a complaint received by post or phone")
    cn.add_argument("--brand", required=True)
    cn.add_argument("--channel", default="postal", choices=["postal", "phone", "email", "form"])
    cn.add_argument("--received", required=True, help="date received, YYYY-MM-DD or ISO 8601")
    cn.add_argument("--name", required=True)
    cn.add_argument("--email", default="")
    cn.add_argument("--address", default="")
    cn.add_argument("--by-post", action="store_true")
    cn.add_argument("--summary", required=True)
    cn.add_argument("--category", default=None)
    cn.add_argument("--json", action="store_true")
    cr = csub.add_parser("reply", help="answer a case as an agent")
    cr.add_argument("ref")
    cr.add_argument("--file", default=None, help="the reply text (- for stdin)")
    cr.add_argument("--template", default=None, metavar="NAME",
                    help="a saved reply (templates/<brand>/<language>/replies/NAME.txt), after the --file text")
    cr.add_argument("--as", dest="agent", required=True, help="agent address")
    mode = cr.add_mutually_exclusive_group()
    mode.add_argument("--final", action="store_true")
    mode.add_argument("--note", action="store_true")
    mode.add_argument("--ask", action="store_true")
    ca = csub.add_parser("assign", help="give a case to an agent of its brand")
    ca.add_argument("ref")
    ca.add_argument("agent")
    ca.add_argument("--as", dest="actor", default="cli")
    ce = csub.add_parser("extend", help="move the deadline by N business days; the customer is told why")
    ce.add_argument("ref")
    ce.add_argument("days", type=int)
    ce.add_argument("reason")
    ce.add_argument("--as", dest="actor", default="cli")
    cc = csub.add_parser("close", help="close a case (before its final response: --reason, told to the customer)")
    cc.add_argument("ref")
    cc.add_argument("--reason", default="", help="why; required before the final response")
    cc.add_argument("--as", dest="actor", default="cli")
    co = csub.add_parser("reopen", help="work on a closed or answered case again")
    co.add_argument("ref")
    co.add_argument("--reason", default="", help="why (kept in the timeline)")
    co.add_argument("--as", dest="actor", default="cli")
    cm = csub.add_parser("merge", help="make REF and OTHER one case (same customer, same matter); the customer is told")
    cm.add_argument("ref")
    cm.add_argument("other", help="the other case's reference (the one received first is kept)")
    cm.add_argument("--as", dest="actor", default="cli")
    ck = csub.add_parser("link", help="relate two cases (each names the other)")
    ck.add_argument("ref")
    ck.add_argument("other", help="the reference of the other case")
    ck.add_argument("--as", dest="actor", default="cli")

    ob = sub.add_parser("outbox", help="outgoing mail")
    ob.add_argument("action", choices=["list", "flush", "retry"])
    ob.add_argument("id", nargs="?", type=int, help="retry: the failed row to send again")
    ob.add_argument("--status", default=None)
    ob.add_argument("--json", action="store_true")

    q = sub.add_parser("quarantine", help="mail that could not be handled")
    q.add_argument("action", choices=["list", "show", "retry"])
    q.add_argument("id", nargs="?", type=int)
    q.add_argument("--raw", action="store_true", help="show: print the raw bytes")

    ib = sub.add_parser("inbound", help="every mail received, whatever became of it")
    ib.add_argument("action", choices=["list", "show"])
    ib.add_argument("id", nargs="?", type=int)
    ib.add_argument("--automatic", action="store_true")
    ib.add_argument("--limit", type=int, default=100)
    ib.add_argument("--raw", action="store_true", help="show: print the raw bytes")

    st = sub.add_parser("stats", help="counts and SLA compliance per brand/category/status")
    st.add_argument("--json", action="store_true")
    lt = sub.add_parser("letters", help="letters to post: customers answered by post")
    lsub = lt.add_subparsers(dest="action", required=True)
    ll = lsub.add_parser("list", help="the letters to post, each with its PDF")
    ll.add_argument("--all", action="store_true")
    ll.add_argument("--json", action="store_true")
    lp = lsub.add_parser("posted", help="record a letter as posted")
    lp.add_argument("id", type=int)
    lp.add_argument("--on", default=None, type=_day)
    lp.add_argument("--as", dest="actor", default="cli")
    reg = sub.add_parser("register", help="the complaint register: one line per round of each case")
    reg.add_argument("action", choices=["export"])
    reg.add_argument("--format", choices=["csv", "xlsx"], default="csv", help="default: %(default)s")
    reg.add_argument("--csv", dest="format", action="store_const", const="csv", help="same as --format csv")
    reg.add_argument("--out", default=None, help="write to FILE (default: standard output)")

    imc = sub.add_parser("imap", help="IMAP mailboxes")
    imc.add_argument("action", choices=["check"])

    wb = sub.add_parser("web", help="status page, complaint form, intake API, staff console (uvicorn)")
    wb.add_argument("--host", default=None, help="bind address (default: web.host)")
    wb.add_argument("--port", default=None, type=int, help="port (default: web.port)")

    pf = sub.add_parser("postfix-maps", help="Postfix tables for the brand addresses (transport, recipients)")
    pf.add_argument("table", choices=["transport", "recipients", "domains"])
    pf.add_argument("--next-hop", default=None,
                    help="transport: where Postfix hands the mail (default: from [smtp], e.g. smtp:[127.0.0.1]:2525)")

    tk = sub.add_parser("tick", help="one pass of every scheduled job")
    tk.add_argument("--now", default=None, type=parse_when, help="ISO 8601 time to run the jobs as of")
    return teach(p)


# The commands that sign or check agent tokens: every one that receives mail, changes a
# case or sends mail. They refuse to start without the secret (there is no built-in key:
# a public one would let anyone forge agent commands); the read-only ones run without it.
NEEDS_SECRET = {("run", None), ("ingest", None), ("import", None), ("tick", None), ("cases", "new"),
                ("cases", "reply"), ("cases", "assign"), ("cases", "extend"), ("cases", "close"),
                ("cases", "reopen"), ("cases", "merge"), ("cases", "link"),
                ("quarantine", "retry"), ("outbox", "flush"), ("web", None)}


def needs_secret(args: argparse.Namespace) -> bool:
    return (args.command, None) in NEEDS_SECRET or (args.command, getattr(args, "action", None)) in NEEDS_SECRET


def _handlers() -> dict[str, Handler]:
    from mailbot.cli import commands

    return {
        "run": commands.cmd_run, "db": commands.cmd_db,
        "ingest": commands.cmd_ingest, "import": commands.cmd_import, "cases": commands.cmd_cases,
        "outbox": commands.cmd_outbox, "quarantine": commands.cmd_quarantine, "inbound": commands.cmd_inbound,
        "stats": commands.cmd_stats, "register": commands.cmd_register, "imap": commands.cmd_imap,
        "tick": commands.cmd_tick, "web": commands.cmd_web, "letters": commands.cmd_letters, "postfix-maps": commands.cmd_postfix_maps,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: every string it prints is cleaned of control characters (cli/terminal.py);
    every file it creates is its user's alone, whatever the umask (mailbot/filemodes.py)."""
    from mailbot.cli.terminal import cleaned_output
    from mailbot.filemodes import private_umask

    private_umask()

    with cleaned_output():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ingest":
        handed = hand_to_daemon(args)
        if handed is not None:
            return handed
    from mailbot.config import ConfigError, MissingSecret, load_config
    from mailbot.ops.logs import setup_logging

    setup_logging(args.verbose, args.log_format)
    if args.command == "check-config":
        from mailbot.cli.commands import cmd_check_config

        return cmd_check_config(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EX_USAGE
    if needs_secret(args):
        try:
            config.security.resolved_secret()
        except MissingSecret as exc:
            print(f"{config.source_path}: mailbot {args.command} refuses to start: {exc}", file=sys.stderr)
            return EX_USAGE
    from sqlalchemy.exc import IntegrityError

    from mailbot.db import TRANSIENT_DB_ERRORS
    from mailbot.ingest.pipeline import TemporaryFailure

    try:
        return _handlers()[args.command](args, config)
    except IntegrityError:
        raise  # a broken constraint is a bug or bad data: never "retry later"
    except (TemporaryFailure, *TRANSIENT_DB_ERRORS) as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        print(f"mailbot: temporary failure (database unavailable?), retry later: {first}", file=sys.stderr)
        return EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EX_OK


class _Version(argparse.Action):
    """`--version`, worked out only when asked (reading the package metadata costs every
    other command, the pipe's `ingest` included, a few milliseconds)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"mailbot {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mailbot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def hand_to_daemon(args: argparse.Namespace) -> int | None:
    """`mailbot ingest` through the running daemon (mailbot.pipe): the exit code, or None
    when no daemon answered (the mail is then ingested in process; its bytes are kept in
    `args.raw`, standard input being readable once)."""
    from mailbot import pipe

    settings = pipe.settings(args.config)
    if settings is None or not settings.socket or not os.path.exists(settings.socket):
        return None  # (the mail is not read yet: the full path checks the config and the secret first)
    args.raw = pipe.read_mail(args.file)
    answer = pipe.deliver(settings.socket, args.raw, args.sender, args.recipient, settings.timeout)
    if answer is None:
        return None
    if answer.code == 250:
        print(answer.text)
        return EX_DATAERR if answer.text.startswith("quarantined") else EX_OK
    if 400 <= answer.code < 500:
        print(f"mailbot: {answer.text}", file=sys.stderr)
        return EX_TEMPFAIL
    return None  # (a refusal such as 552, too big for the socket: in process, as before)


def _day(value: str) -> date:
    return date.fromisoformat(value)


def parse_when(value: str) -> datetime:
    """A date or ISO 8601 time; naive values are UTC."""
    from datetime import UTC

    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
