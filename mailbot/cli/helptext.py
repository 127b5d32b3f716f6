"""What `mailbot COMMAND --help` teaches: a line on what the command does, and examples.

`teach(parser)` gives every (sub)command its description and examples from `COMMANDS`,
and every argument without a help text the common one for its name (`ARGUMENTS`).
tests/test_help.py fails when a command has no entry here or an argument no help:
add both with a new command.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

# command path -> (what it does, examples). The first line of the description is the one
# `mailbot --help` would show if the parser gave none.
COMMANDS: dict[str, tuple[str, str]] = {
    "": ("Email-to-case engine for complaint procedures: mail in, cases with deadlines, answers out.",
         "mailbot --config /etc/mailbot/config.toml check-config\n"
         "mailbot cases list --overdue\n"
         "mailbot COMMAND --help            # what each command does, with examples"),
    "run": ("The daemon: the SMTP/LMTP listener, the IMAP pollers, the scheduler (SLA sweep, reminders, "
            "escalations, auto-close, retention) and the outbox dispatcher, until SIGTERM. SIGHUP reloads "
            "the config.",
            "mailbot --config /etc/mailbot/config.toml run\n"
            "mailbot --log-format text run     # readable lines at a terminal"),
    "check-config": ("Validate the config file and render every template of every brand: every error in one "
                     "run, as FILE:LINE: key PATH: problem. Exit 0 when usable, 2 when not.",
                     "mailbot --config /etc/mailbot/config.toml check-config"),
    "db": ("Database maintenance: `upgrade` applies the pending migrations (safe to run twice).",
           "mailbot db upgrade"),
    "ingest": ("Record one raw mail, as an MTA's pipe transport hands it over. Exit 0 recorded, 65 kept in "
               "quarantine, 75 database unavailable (the MTA retries).",
               "mailbot ingest -r support@kalra-plus.com -f marie@example.org - < mail.eml\n"
               "mailbot ingest mail.eml"),
    "import": ("Import a backlog from an mbox file or a Maildir, keeping each mail's date; a mail "
               "imported twice is recorded once.",
               "mailbot import /var/mail/support.mbox\n"
               "mailbot import ~/Maildir --brand divikeys"),
    "cases": ("List, search, show, register and act on cases (the agent's commands by mail, from the "
              "command line).",
              "mailbot cases list --mine agent@kalra-plus.com\n"
              "mailbot cases show KP-2026-000123"),
    "cases list": ("The work queue, soonest deadline first, with local times.",
                   "mailbot cases list                      # every case still running\n"
                   "mailbot cases list --status waiting_customer --brand divikeys\n"
                   "mailbot cases list --mine agent@kalra-plus.com --overdue\n"
                   "mailbot cases list --status all --json --limit 500"),
    "cases show": ("One case: its facts, each message's text (and why it was threaded there), notes, "
                   "attachments and timeline.",
                   "mailbot cases show KP-2026-000123\n"
                   "mailbot cases show KP-2026-000123 --json | jq .due_at"),
    "cases search": ("Find cases by reference, customer name or address, subject, or any word of their "
                     "messages.",
                     "mailbot cases search dupont\n"
                     "mailbot cases search \"virement\" --status open"),
    "cases attachment": ("Save an attachment of a case, numbered as `cases show` lists them.",
                         "mailbot cases attachment KP-2026-000123 1 --out /tmp/"),
    "cases new": ("Register a complaint received by post or phone: it gets a reference and deadlines from "
                  "the day it was received; with --email the customer is acknowledged by mail.",
                  "mailbot cases new --brand kalra-plus --channel postal --received 2026-11-23 \\\n"
                  "    --name \"Marie Dupont\" --address \"3 rue des Lilas, 75011 Paris\" \\\n"
                  "    --summary \"Virement de 1 250 EUR non reçu\""),
    "cases reply": ("Answer a case as an agent, as a reply by mail would: to the customer, as an internal "
                    "note, as a question (the case then waits for the customer), or as the final response "
                    "(which must carry the brand's final_sections).",
                    "mailbot cases reply KP-2026-000123 --as agent@kalra-plus.com --file answer.txt\n"
                    "mailbot cases reply KP-2026-000123 --as agent@kalra-plus.com --note --file - <<< \"Appelé\"\n"
                    "mailbot cases reply KP-2026-000123 --as agent@kalra-plus.com --final --file final.txt\n"
                    "mailbot cases reply KP-2026-000123 --as agent@kalra-plus.com --ask --template documents"),
    "cases assign": ("Give a case to an agent of its brand (who then gets its reminders).",
                     "mailbot cases assign KP-2026-000123 agent@kalra-plus.com --as supervisor@kalra-plus.com"),
    "cases extend": ("Move a case's answer deadline by N business days (in the brand's calendar: weekends and "
                     "public holidays do not count); the customer is told the new date and the reason.",
                     "mailbot cases extend DK-2026-000042 10 \"expertise du porteur de projet en cours\""),
    "cases close": ("Close a case. Before its final response a reason is required, and the customer is told.",
                    "mailbot cases close KP-2026-000123\n"
                    "mailbot cases close KP-2026-000123 --reason \"réclamation retirée par le client\""),
    "cases reopen": ("Work on a closed or answered case again: back in progress, its clock running.",
                     "mailbot cases reopen KP-2026-000123 --as supervisor@kalra-plus.com --reason \"nouvelle pièce\""),
    "cases merge": ("Make REF and OTHER one case: the same customer's two cases about one matter become one (one "
                    "thread, the earlier deadline); the one received first is kept, the other closed as merged, "
                    "and the customer is told once.",
                    "mailbot cases merge KP-2026-000123 KP-2026-000130 --as agent@kalra-plus.com"),
    "cases link": ("Relate two cases (each names the other in `cases show`); nothing is sent.",
                   "mailbot cases link KP-2026-000123 KP-2026-000140"),
    "outbox": ("Outgoing mail: `list` what waits, was sent or failed; `flush` sends what is due now; `retry ID` "
               "gives a failed mail a fresh set of attempts.",
               "mailbot outbox list --status failed\n"
               "mailbot outbox retry 42\n"
               "mailbot outbox flush"),
    "quarantine": ("Mail that could not be handled, kept with its raw bytes and a reason: `list`, `show ID` "
                   "(--raw for the bytes), `retry ID` (ingest again with today's code and config).",
                   "mailbot quarantine list\n"
                   "mailbot quarantine show 12 --raw > /tmp/q12.eml\n"
                   "mailbot quarantine retry 12"),
    "inbound": ("Every mail received, whatever became of it, newest first: `list` (--automatic: only the "
                "automatic mail that is on no case, e.g. a form mailer's notice), `show ID` (--raw for the bytes).",
                "mailbot inbound list --automatic\n"
                "mailbot inbound show 4312\n"
                "mailbot inbound show 4312 --raw > /tmp/m4312.eml"),
    "stats": ("Counts per brand, category and status, and deadlines met.",
              "mailbot stats\n"
              "mailbot stats --json"),
    "letters": ("Letters to post, for customers answered by post (no email address, or `cases new --by-post`): "
                "`list` renders each waiting letter to a PDF in `[letters] path` and lists them; `posted ID` "
                "records the day a letter left (an acknowledgement then counts as sent, a final response as "
                "the answer).",
                "mailbot letters list\n"
                "mailbot letters posted 7 --on 2026-12-07"),
    "letters list": ("The letters still to post (--all: posted ones too), with their PDF file.",
                     "mailbot letters list\n"
                     "mailbot letters list --all --json"),
    "letters posted": ("Record a letter as posted, today or --on the day it left (not before it was written, "
                       "not in the future).",
                       "mailbot letters posted 7\n"
                       "mailbot letters posted 7 --on 2026-12-07 --as agent@divikeys.com"),
    "register": ("The complaint register, one line per round of each case (the regulator's table).",
                 "mailbot register export --csv > register.csv\n"
                 "mailbot register export --format xlsx --out register.xlsx"),
    "imap": ("IMAP mailboxes: `check` compares each configured folder with what was recorded (mail left "
             "unseen, not recorded, stuck).",
             "mailbot imap check"),
    "web": ("The web side: the customers' complaint form and status page, the intake API and the staff "
            "console (uvicorn; nginx in front).",
            "mailbot web --port 8080"),
    "postfix-maps": ("Print a Postfix table made from the brand addresses: `transport` (to mailbot's "
                     "listener), `recipients` (for relay_recipient_maps: Postfix refuses other addresses of "
                     "the domains), or the `domains` for relay_domains.",
                     "mailbot postfix-maps transport  | sudo tee /etc/postfix/mailbot_transport\n"
                     "mailbot postfix-maps recipients | sudo tee /etc/postfix/mailbot_recipients\n"
                     "mailbot postfix-maps transport --next-hop mailbot:   # the pipe transport"),
    "tick": ("One pass of every scheduled job (SLA sweep, reminders, escalations, outbox, auto-close, "
             "retention), as the daemon runs them; --now runs them as of another time.",
             "mailbot tick\n"
             "mailbot tick --now 2026-12-01T09:00:00+01:00"),
}

# The help of an argument that has none: by "command:name", else by its name (dest).
ARGUMENTS: dict[str, str] = {
    "outbox:status": "list: only rows in this state: pending, sent, failed or redirected",
    "ref": "the case reference, e.g. KP-2026-000123",
    "json": "print JSON (stable keys, for scripts)",
    "page": "which page of results (see --limit)",
    "brand": "a brand key from the config, e.g. kalra-plus",
    "actor": "who acts, written in the case's timeline (an agent's address; default: cli)",
    "agent": "the agent's address (a configured agent of the case's brand)",
    "sort": "order: due (deadline), received or updated",
    "path": "an mbox file or a Maildir directory",
    "text": "words to look for",
    "n": "the attachment's number in `cases show`",
    "name": "the customer's name",
    "email": "the customer's address: they get the acknowledgement by mail (without it: a letter)",
    "address": "the customer's postal address (required when they are answered by post)",
    "by_post": "the customer asked for paper: every mail to them is a letter to post",
    "on": "the day the letter was posted, YYYY-MM-DD (default: today)",
    "all": "also the letters already posted",
    "letters:id": "the letter's number, as `letters list` shows it",
    "summary": "what the complaint is about (kept as the case's first message)",
    "category": "a category key of the brand (default: from the summary's words)",
    "channel": "how the complaint came",
    "final": "the final response (must carry the brand's final_sections)",
    "note": "an internal note: nothing goes to the customer",
    "ask": "a question to the customer: the case waits for their answer",
    "days": "business days to add to the deadline (1 to 60), in the brand's calendar",
    "reason": "why: the customer is told",
    "table": "which table to print",
    "id": "the row's number, as `list` shows it",
    "raw": "show: print the raw mail, bytes as received",
    "automatic": "list: only automatic mail that is on no case (kept, never answered)",
    "inbound:limit": "list: at most this many rows (default: 100)",
}

# `action` positionals: their choices, explained.
ACTIONS: dict[str, str] = {
    "db": "upgrade: apply the pending migrations",
    "outbox": "list | flush | retry (with ID)",
    "quarantine": "list | show (with ID) | retry (with ID)",
    "inbound": "list | show (with ID)",
    "register": "export: write the register",
    "imap": "check: compare the mailboxes with what was recorded",
}


def subcommands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(path, parser) of the parser and of every subcommand below it ("cases list")."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, f"{path} {name}".strip())


class _Formatter(argparse.HelpFormatter):
    """Wraps the description; keeps the examples' lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def teach(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Descriptions, examples and argument helps on every command of `parser`."""
    for path, sub in subcommands(parser):
        what, examples = COMMANDS.get(path, ("", ""))
        sub.description = what or sub.description
        if examples:
            sub.epilog = "examples:\n" + "\n".join("  " + line for line in examples.splitlines())
        sub.formatter_class = _Formatter
        for action in sub._actions:
            if action.help is None and not isinstance(action, argparse._SubParsersAction):
                action.help = (ACTIONS.get(path) if action.dest == "action"
                               else ARGUMENTS.get(f"{path}:{action.dest}", ARGUMENTS.get(action.dest)))
    return parser
