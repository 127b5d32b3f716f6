"""`mailbot letters list|posted`: the letters to post, and recording one as posted."""

from __future__ import annotations

import argparse
import sys

from mailbot import db
from mailbot.app import App
from mailbot.cases import postal
from mailbot.cli.printing import print_json
from mailbot.exitcodes import EX_DATAERR, EX_OK


def dispatch(args: argparse.Namespace, app: App) -> int:
    return {"list": letters_list, "posted": letters_posted}[args.action](args, app)


def letters_list(args: argparse.Namespace, app: App) -> int:
    """Render the letters not rendered yet (their PDF files appear in `[letters] path`), then list."""
    postal.render_pending(app)
    with db.read_scope(app.engine) as s:
        rows = postal.list_letters(s, app, all_=args.all)
    if args.json:
        print_json([r.to_json() for r in rows])
        return EX_OK
    if not rows:
        print("no letter to post" if not args.all else "no letter")
        return EX_OK
    for r in rows:
        state = f"posted {r.posted_on}" if r.posted_on else "to post"
        where = r.file or f"not rendered: {r.error}"
        print(f"#{r.id:<5} {r.ref:<16} {r.kind:<18} {state:<18} written {r.created_on}  "
              f"{r.to_name}, {r.to_address or '(no postal address!)'}\n       {where}")
    return EX_OK


def letters_posted(args: argparse.Namespace, app: App) -> int:
    try:
        with db.session_scope(app.engine) as s:
            letter = postal.posted(s, app, args.id, on=args.on, by=args.actor)
            on = letter.posted_on
    except postal.NotPostable as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return EX_DATAERR
    print(f"letter #{args.id} posted on {on.isoformat() if on else '?'}")
    return EX_OK
