"""Handlers of the command line's subcommands (thin: they call the library and print)."""

from __future__ import annotations

import argparse
import mailbox
import sys
from collections.abc import Iterator
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from mailbot import db
from mailbot.app import App
from mailbot.cli.printing import print_json, read_input
from mailbot.config import Config
from mailbot.exitcodes import EX_DATAERR, EX_OK, EX_TEMPFAIL, EX_USAGE
from mailbot.ingest.pipeline import Outcome, Received, TemporaryFailure, ingest, ingest_stream
from mailbot.mail.parsing import clamp_date
from mailbot.models import Case, Outbox, Quarantine
from mailbot.pipe import outcome_line


def open_app(config: Config, *, upgrade: bool | None = None) -> App:
    return App.open(config, upgrade=upgrade)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from mailbot.ops.daemon import run_daemon

    return run_daemon(config, config_path=args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem of the file in one run (it is read here, not by `main`, so that
    schema errors do not hide the other checks)."""
    from mailbot.ops.checks import check_file

    report = check_file(args.config)
    for w in report.warnings:
        print(w.render(report.path, "warning"), file=sys.stderr)
    for e in report.errors:
        print(e.render(report.path), file=sys.stderr)
    if report.errors or report.parts is None or report.parts.config is None:
        n = len(report.errors)
        print(f"check-config: {n} error{'s' if n != 1 else ''} in {report.path}", file=sys.stderr)
        return EX_USAGE
    config = report.parts.config
    print(f"{report.path}: OK ({len(config.brands)} brands, {len(config.agents)} agents)")
    return EX_OK


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    engine = db.make_engine(config.database_url(), busy_timeout=config.database.busy_timeout)
    db.upgrade(engine)
    print(f"database at head ({engine.url.render_as_string(hide_password=True)})")
    return EX_OK


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    """Pipe mode, in process (no daemon answered on its socket: mailbot.pipe): sysexits tell
    the MTA what to do (75 = try again later)."""
    raw = args.raw if getattr(args, "raw", None) is not None else read_input(args.file)
    try:
        app = open_app(config)
        result = ingest(app, raw, "pipe", envelope_from=args.sender, envelope_to=args.recipient)
    except IntegrityError:
        raise  # never "retry later": the MTA would deliver it again forever
    except (TemporaryFailure, *db.TRANSIENT_DB_ERRORS) as exc:
        print(f"mailbot: temporary failure, retry later: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    print(outcome_line(result.outcome, result.case_refs, result.reason))
    return EX_DATAERR if result.outcome is Outcome.QUARANTINED else EX_OK


def _mails_at(path: Path) -> Iterator[bytes]:
    if path.is_dir():
        box: mailbox.Mailbox = mailbox.Maildir(path, factory=None, create=False)
    else:
        box = mailbox.mbox(path, factory=None, create=False)
    for key in box.iterkeys():
        yield box.get_bytes(key)


def _original_date(raw: bytes):  # type: ignore[no-untyped-def]
    """Imported mail keeps its original received date (the Date header)."""
    head = raw[:65536].split(b"\n\n", 1)[0].decode("latin-1")
    for line in head.splitlines():
        if line.lower().startswith("date:"):
            try:
                d = parsedate_to_datetime(line[5:].strip())
                return clamp_date(d if d.tzinfo else d.replace(tzinfo=UTC))
            except (TypeError, ValueError):
                return None
    return None


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    from mailbot.cli.progress import Progress

    path = Path(args.path)
    if not path.exists():
        print(f"mailbot: {path}: no such mbox file or Maildir", file=sys.stderr)
        return EX_USAGE
    app = open_app(config)
    counts: dict[str, int] = {}
    progress = Progress("import")

    def batches() -> Iterator[list[Received]]:
        batch: list[Received] = []
        for raw in _mails_at(path):
            batch.append(Received(raw, f"import:{path.name}", received_at=_original_date(raw),
                                  mailbox_brand=args.brand))
            if len(batch) >= 100:
                yield batch
                batch = []
        if batch:
            yield batch

    try:
        for items, results in ingest_stream(app, batches()):
            for r in results:
                counts[r.outcome] = counts.get(r.outcome, 0) + 1
            progress.advance(len(items))
    except TemporaryFailure as exc:
        print(f"mailbot: database unavailable, import stopped (safe to re-run): {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    progress.done()
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to import")
    return EX_OK


def cmd_cases(args: argparse.Namespace, config: Config) -> int:
    from mailbot.cli import case_commands

    return case_commands.dispatch(args, open_app(config))


def cmd_outbox(args: argparse.Namespace, config: Config) -> int:
    from mailbot.cases.deliveries import dispatch
    from mailbot.outgoing.outbox import outbox_rows

    app = open_app(config)
    if args.action == "retry":
        return _retry_outbox(app, args.id)
    if args.action == "flush":
        report = dispatch(app)
        print(report)
        return EX_OK if report.failed == 0 else 1
    data = outbox_rows(app, args.status)
    if args.json:
        print_json(data)
        return EX_OK
    for d in data:
        err = f"  last error: {d['last_error']}" if d["last_error"] else ""
        print(f"#{d['id']:<6} {d['status']:<8} {d['kind']:<20} {d['case'] or '-':<16} {d['to']:<35} "
              f"attempts={d['attempts']} next={d['not_before']}{err}")
    return EX_OK


def _retry_outbox(app: App, row_id: int | None) -> int:
    """Give a `failed` row a fresh set of attempts (after fixing the relay or the address)."""
    from mailbot.cases.records import log_event

    if row_id is None:
        print("mailbot: outbox retry needs an ID (see outbox list --status failed)", file=sys.stderr)
        return EX_USAGE
    with db.session_scope(app.engine) as s:
        row = s.get(Outbox, row_id)
        if row is None or row.status != "failed":
            print(f"mailbot: outbox row #{row_id} is not a failed row", file=sys.stderr)
            return EX_USAGE
        row.status, row.attempts, row.not_before = "pending", 0, app.now()
        s.add(row)
        case = s.get(Case, row.case_id) if row.case_id else None
        if case is not None:
            log_event(s, case, "mail_retry", actor="cli", at=app.now(), outbox=row.id, kind=row.kind)
    print(f"outbox row #{row_id} pending again")
    return EX_OK


def cmd_quarantine(args: argparse.Namespace, config: Config) -> int:
    from mailbot.ingest import quarantine

    app = open_app(config)
    if args.action == "list":
        for q in quarantine.held(app):
            print(f"#{q.id:<6} {q.status:<8} {q.created_at.isoformat()} {q.source:<20} {q.reason[:120]}")
        return EX_OK
    if args.id is None:
        print("mailbot: quarantine show|retry needs an ID", file=sys.stderr)
        return EX_USAGE
    found = quarantine.held_mail(app, args.id)
    if found is None:
        print(f"mailbot: no quarantine row #{args.id}", file=sys.stderr)
        return EX_USAGE
    q, raw = found
    if args.action == "show":
        if args.raw:
            sys.stdout.buffer.write(raw)
            return EX_OK
        print(f"#{q.id} {q.status} from {q.source} at {q.created_at.isoformat()}\nreason: {q.reason}\n"
              f"sha256: {q.sha256}  size: {len(raw)} bytes  envelope to: {', '.join(q.envelope_to) or '-'}")
        return EX_OK
    return _retry_quarantined(app, q, raw)


def cmd_inbound(args: argparse.Namespace, config: Config) -> int:
    from mailbot.ingest import received

    app = open_app(config)
    if args.action == "list":
        for r in received.listed(app, automatic=args.automatic, limit=args.limit):
            print(f"#{r.id:<6} {r.received_at.isoformat()} {r.outcome:<11} {r.sender[:60]:<40} {r.subject[:60]}"
                  f"\n        {r.reason[:160]}")
        return EX_OK
    if args.id is None:
        print("mailbot: inbound show needs an ID", file=sys.stderr)
        return EX_USAGE
    found = received.received_mail(app, args.id)
    if found is None:
        print(f"mailbot: no inbound mail #{args.id}", file=sys.stderr)
        return EX_USAGE
    row, raw = found
    if args.raw:
        sys.stdout.buffer.write(raw)
        return EX_OK
    print(f"#{row.id} {row.outcome} from {row.source} at {row.received_at.isoformat()}\nreason: {row.reason}\n"
          f"envelope from: {row.envelope_from or '-'}  to: {', '.join(row.envelope_to) or '-'}  "
          f"size: {len(raw)} bytes\n")
    print(raw.decode("utf-8", "replace"))
    return EX_OK


def _retry_quarantined(app: App, q: Quarantine, raw: bytes) -> int:
    from mailbot.ingest.quarantine import retry

    result = retry(app, q.id or 0, raw)
    print(f"{result.outcome}: {' '.join(result.case_refs)} {result.reason}".strip())
    return EX_DATAERR if result.outcome is Outcome.QUARANTINED else EX_OK


def cmd_letters(args: argparse.Namespace, config: Config) -> int:
    from mailbot.cli import letter_commands

    return letter_commands.dispatch(args, open_app(config))


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    from mailbot.cli.reports import print_stats

    return print_stats(open_app(config), as_json=args.json)


def cmd_register(args: argparse.Namespace, config: Config) -> int:
    from mailbot.cli.reports import cmd_export

    return cmd_export(open_app(config), args.format, args.out)


def cmd_imap(args: argparse.Namespace, config: Config) -> int:
    from mailbot.channels.imap_check import reconcile_all

    problems = reconcile_all(open_app(config))
    return EX_OK if problems == 0 else 1


def cmd_tick(args: argparse.Namespace, config: Config) -> int:
    from mailbot.ops.jobs import run_all_jobs

    try:
        app = open_app(config)
        if args.now:
            fixed = args.now  # parsed by the command line (cli.parse_when)
            app.clock = lambda: fixed
        report = run_all_jobs(app)
    except (TemporaryFailure, *db.TRANSIENT_DB_ERRORS) as exc:
        print(f"mailbot: temporary failure: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    for line in report:
        print(line)
    return EX_OK


def cmd_web(args: argparse.Namespace, config: Config) -> int:
    from mailbot.web.server import serve

    return serve(config, args.host, args.port)


def cmd_postfix_maps(args: argparse.Namespace, config: Config) -> int:
    from mailbot.ops import postfix

    if args.table == "transport":
        sys.stdout.write(postfix.transport_map(config, args.next_hop))
    elif args.table == "recipients":
        sys.stdout.write(postfix.recipients_map(config))
    else:
        print(" ".join(postfix.domains(config)))
    return EX_OK
