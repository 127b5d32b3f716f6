"""`mailbot cases …`: list, show, new (postal/phone), reply, assign, extend, close."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path

from sqlmodel import Session, select

from mailbot import caselocks, db
from mailbot.app import App
from mailbot.cases import actions, merging
from mailbot.cases.queue import BadFilter, QueueFilter, list_cases, queue_row
from mailbot.cases.records import add_message, open_case
from mailbot.cases.responses import acknowledge
from mailbot.cases.search import search_cases
from mailbot.cases.views import attachment_bytes, case_detail, format_case, when
from mailbot.cli.printing import print_json, print_queue, read_input
from mailbot.exitcodes import EX_DATAERR, EX_OK, EX_USAGE
from mailbot.mail.extract import extract, mentions_steps_taken
from mailbot.mail.senders import valid_address
from mailbot.models import Case
from mailbot.outgoing import letters


def dispatch(args: argparse.Namespace, app: App) -> int:
    handler = {"list": cases_list, "search": cases_search, "show": cases_show, "attachment": cases_attachment, "new": cases_new,
               "reply": cases_reply, "assign": cases_assign, "extend": cases_extend,
               "close": cases_close, "reopen": cases_reopen, "merge": cases_merge, "link": cases_link}[args.action]
    return handler(args, app)


def cases_list(args: argparse.Namespace, app: App) -> int:
    f = QueueFilter(status=args.status, brand=args.brand, mine=args.mine, assignee=args.assignee,
                    overdue=args.overdue, due_today=args.due_today)
    try:
        with db.read_scope(app.engine) as s:
            page = list_cases(s, app, f, page=args.page, per_page=args.limit, sort=args.sort)
    except BadFilter as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return EX_USAGE
    if args.json:
        print_json([r.to_json() for r in page.rows])
    else:
        print_queue(page)
    if page.has_next:
        print(f"mailbot: showing {page.first}-{page.last} of {page.total}; next: --page {page.page + 1}",
              file=sys.stderr)
    return EX_OK


def cases_search(args: argparse.Namespace, app: App) -> int:
    try:
        with db.read_scope(app.engine) as s:
            page = search_cases(s, app, args.text, status=args.status, page=args.page, per_page=args.limit)
    except BadFilter as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return EX_USAGE
    if args.json:
        print_json([r.to_json() for r in page.rows])
    else:
        print_queue(page, what=f"matching {args.text!r}")
    if page.has_next:
        print(f"mailbot: showing {page.first}-{page.last} of {page.total_text}; next: --page {page.page + 1}",
              file=sys.stderr)
    return EX_OK


def _find(s: Session, ref: str) -> Case | None:
    case = s.exec(select(Case).where(Case.ref == ref.upper())).first()
    if case is None:
        print(f"mailbot: no case {ref}", file=sys.stderr)
    return case


def cases_show(args: argparse.Namespace, app: App) -> int:
    with db.read_scope(app.engine) as s:
        case = _find(s, args.ref)
        if case is None:
            return EX_USAGE
        detail = case_detail(s, app, case)
    if args.json:
        print_json(detail.to_json())
    else:
        print(format_case(detail, full=args.full))
    return EX_OK


def cases_attachment(args: argparse.Namespace, app: App) -> int:
    """Write the N-th attachment of the case (as `cases show` numbers them) to --out."""
    with db.read_scope(app.engine) as s:
        case = _find(s, args.ref)
        if case is None:
            return EX_USAGE
        found = attachment_bytes(s, app, case, args.n)
    if isinstance(found, str):
        print(f"mailbot: {found}", file=sys.stderr)
        return EX_USAGE
    view, data = found
    out = Path(args.out)
    if out.is_dir():
        out = out / view.filename
    if out.exists() and not args.force:
        print(f"mailbot: {out} exists (--force to replace it)", file=sys.stderr)
        return EX_USAGE
    out.write_bytes(data)
    print(f"{case.ref} attachment #{view.n} {view.filename} ({view.content_type}, {view.size} B) written to {out}")
    return EX_OK


def _received(value: str, app: App, brand_key: str) -> datetime:
    """A date (local noon of the brand) or an ISO time."""
    tz = app.calendar(brand_key).tz
    dt = datetime.fromisoformat(value)
    if len(value) <= 10:
        dt = datetime.combine(dt.date(), time(12, 0))
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def cases_new(args: argparse.Namespace, app: App) -> int:
    """A complaint received on paper (or by phone): deadlines count from its received date."""
    try:
        brand = app.config.brand(args.brand)
    except KeyError:
        print(f"mailbot: unknown brand {args.brand!r}", file=sys.stderr)
        return EX_USAGE
    if args.email and not valid_address(args.email.strip()):
        print(f"mailbot: --email {args.email!r} is not a valid address (local@domain)", file=sys.stderr)
        return EX_USAGE
    try:
        received = _received(args.received, app, brand.key)
    except ValueError:
        print(f"mailbot: --received {args.received!r}: expected YYYY-MM-DD or ISO 8601", file=sys.stderr)
        return EX_USAGE
    facts = extract(args.summary, sent_at=received, display_name=args.name, from_addr=args.email or None,
                    categories=[(c.key, c.keywords) for c in brand.categories],
                    default_category=brand.default_category, urgent_keywords=brand.urgent_keywords)
    data = facts.to_json()
    if args.address:
        data["postal_address"] = args.address.strip()
    if brand.ask_steps_taken and not mentions_steps_taken(args.summary):
        data["missing"] = [*data.get("missing", []), "etapes"]
    if args.address or args.email:  # the contact details are known: not asked for again
        data["missing"] = [m for m in data.get("missing", []) if m != "coordonnees"]
    if args.by_post:
        data["by_post"] = True
    if (args.by_post or not (args.email or "").strip()) and not args.address.strip():
        print("mailbot: this customer is answered by post (no --email, or --by-post): give their postal "
              "address with --address", file=sys.stderr)
        return EX_USAGE
    with db.session_scope(app.engine) as s:
        case = open_case(s, app, brand, customer_email=(args.email or "").strip().lower(), customer_name=args.name,
                         subject=args.summary.splitlines()[0][:200], received_at=received, channel=args.channel,
                         category=args.category or facts.category, urgent=facts.urgent, extracted=data,
                         actor="cli", received_date_only=len(args.received.strip()) <= 10)
        add_message(s, case, direction="in", kind="customer", message_id=None, subject=case.subject,
                    from_addr=case.customer_email, from_name=args.name, body_text=args.summary,
                    sent_at=received, route_signal="manual", route_detail=f"registered by hand ({args.channel})", created_at=app.now())
        acknowledge(s, app, case, None)  # by mail, or a letter to post (mailbot.outgoing.letters)
        out = queue_row(app, case, app.now()).to_json()
    if args.json:
        print_json(out)
    else:
        print(out["ref"])
        if letters.by_post(case):
            print("the acknowledgement is a letter to post: see mailbot letters list", file=sys.stderr)
    return EX_OK


def _act(app: App, ref: str, fn: Callable[[Session, Case], str]) -> int:
    """Run one action on the case in one transaction and print what it did."""
    try:
        with db.session_scope(app.engine) as s:
            case = _find(s, ref)
            if case is None:
                return EX_USAGE
            done = fn(s, caselocks.lock(s, case))
    except actions.Rejected as rej:
        print(f"mailbot: refused: {rej}", file=sys.stderr)
        return EX_DATAERR
    print(done)
    return EX_OK


def _agent_ok(app: App, agent: str, case: Case) -> None:
    a = app.config.agent(agent)
    if a is None or case.brand not in a.brands:
        raise actions.Rejected("reply", [f"{agent} is not an agent of {case.brand}"])


def _local(app: App, case: Case, dt: datetime | None) -> str:
    return when(app.calendar(case.brand).local(dt)) if dt else "-"


def _customer(case: Case) -> str:
    return case.customer_email or "the customer, as a letter to post (letters list)"


def cases_reply(args: argparse.Namespace, app: App) -> int:
    if args.file is None and args.template is None:
        print("mailbot: give the text (--file F, - for stdin) or a saved reply (--template NAME), or both",
              file=sys.stderr)
        return EX_USAGE
    text = read_input(args.file).decode("utf-8") if args.file else ""

    def go(s: Session, case: Case) -> str:
        _agent_ok(app, args.agent, case)
        about = actions.last_customer_message(s, case)
        if args.template:
            text_ = "\n\n".join(t.strip() for t in (text, actions.saved_reply(app, case, about, args.template))
                                 if t.strip())
        else:
            text_ = text
        if args.note:
            actions.note(s, app, case, args.agent, text_)
            return f"{case.ref}: note added by {args.agent}"
        if args.final:
            parsed = actions.final(s, app, case, args.agent, text_, about=about)
            return f"{case.ref}: final response queued to {_customer(case)} (outcome {parsed.outcome}); " \
                   f"the case is {case.status}"
        actions.reply(s, app, case, args.agent, text_, about=about, ask=args.ask)
        what = "question" if args.ask else "reply"
        return f"{case.ref}: {what} queued to {_customer(case)}; the case is {case.status}"

    return _act(app, args.ref, go)


def cases_assign(args: argparse.Namespace, app: App) -> int:
    def go(s: Session, case: Case) -> str:
        before = case.assignee
        agent = actions.assign(s, app, case, args.actor, args.agent)
        told = f"; {agent.email} is told by mail" if agent.email != args.actor.lower() else ""
        return f"{case.ref}: assigned to {agent.email} (was {before or 'nobody'}){told}"

    return _act(app, args.ref, go)


def cases_extend(args: argparse.Namespace, app: App) -> int:
    def go(s: Session, case: Case) -> str:
        before = case.due_at
        actions.extend(s, app, case, args.actor, args.days, args.reason)
        return (f"{case.ref}: deadline moved from {_local(app, case, before)} to {_local(app, case, case.due_at)}; "
                f"{case.customer_email or 'the customer'} is told why")

    return _act(app, args.ref, go)


def cases_close(args: argparse.Namespace, app: App) -> int:
    def go(s: Session, case: Case) -> str:
        told = actions.close(s, app, case, args.actor, args.reason)
        return f"{case.ref}: closed" + (f"; {case.customer_email} is told why" if told else "")

    return _act(app, args.ref, go)


def cases_reopen(args: argparse.Namespace, app: App) -> int:
    def go(s: Session, case: Case) -> str:
        actions.reopen(s, app, case, args.actor, args.reason)
        return f"{case.ref}: reopened ({case.status}), answer due {_local(app, case, case.due_at)}"

    return _act(app, args.ref, go)


def cases_merge(args: argparse.Namespace, app: App) -> int:
    def go(s: Session, case: Case) -> str:
        kept, gone = merging.merge(s, app, case, args.actor, args.other)
        return (f"{gone.ref} merged into {kept.ref} (the one received first; {gone.ref} closed as merged); "
                f"one deadline, {_local(app, kept, kept.due_at)}; {kept.customer_email or 'the customer'} is told once")

    return _act(app, args.ref, go)


def cases_link(args: argparse.Namespace, app: App) -> int:
    def go(s: Session, case: Case) -> str:
        other = merging.link(s, app, case, args.actor, args.other)
        return f"{case.ref} and {other.ref} are linked"

    return _act(app, args.ref, go)
