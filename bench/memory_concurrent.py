"""The daemon's memory under concurrent large mails (issue #27 item 7): `bench/memory.py --concurrent N`.

    python bench/memory.py --concurrent 24 [--mail-mb 20] [--max-data-sessions K] [--code DIR] [--json]

Starts `mailbot run` (a real process, SQLite in a scratch directory), then N SMTP
clients at once each send one mail of `--mail-mb` MB on the wire (a PDF attachment,
incompressible, base64), and reads the daemon's /proc status: RSS before, its peak
(VmHWM) and what it still holds 5 s after the last reply. `--max-data-sessions K` sets
`[smtp] max_data_sessions` (default: the shipped config's); `--code DIR` runs the
daemon from another checkout (e.g. a worktree of an older commit: then no new config key
is written).
"""

from __future__ import annotations

import os
import random
import smtplib
import subprocess
import sys
import threading
import time
import tomllib
from email import policy
from email.message import EmailMessage
from pathlib import Path

from _common import ROOT, bench_app, bench_config, scratch_dir
from gen_mails import fake_pdf
from smtp import stop, wait_listening

from tests.procs import free_port, to_toml


def status_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def the_mail(mail_mb: float) -> bytes:
    """One mail of about `mail_mb` MB on the wire (base64 makes 3 bytes 4, plus line ends)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "Client Gros Fichier <gros.fichier@orange.fr>"
    msg["To"] = "support@kalra-plus.com"
    msg["Subject"] = "Réclamation avec justificatifs numérisés"
    msg["Date"] = "Mon, 02 Jun 2025 09:00:00 +0200"
    msg.set_content("Bonjour,\n\nci-joint le relevé scanné du virement non reçu.\n\nCordialement\n")
    size = int(mail_mb * 1_000_000 * 3 / 4 * 76 / 78)
    msg.add_attachment(fake_pdf(random.Random(7), size, "releve"), maintype="application", subtype="pdf",
                       filename="releve.pdf")
    return msg.as_bytes()


def run(n: int, mail_mb: float, max_data_sessions: int | None, code: Path | None) -> dict:
    work = Path(scratch_dir(prefix="mailbot-bench-memc-"))
    url = f"sqlite:///{work}/bench.db"
    port = free_port()
    data = bench_config(url, str(work), limits={"ack_limit": 100_000, "first_contact_acks": 100_000})
    if code is None:
        bench_app(url, str(work)).close()
    else:  # that checkout's own config and templates; its daemon makes its own schema
        data = {**tomllib.loads((code / "config.toml").read_text()),
                **{k: v for k, v in data.items() if k not in ("smtp", "brands", "agents", "templates_dir")}}
        data["templates_dir"] = str(code / "templates")
    smtp = {**data.get("smtp", {}), "host": "127.0.0.1", "port": port}
    if code is not None:
        smtp = {k: v for k, v in smtp.items() if k not in ("max_data_sessions", "data_wait")}
    elif max_data_sessions is not None:
        smtp["max_data_sessions"] = max_data_sessions
    data["smtp"] = smtp
    data.pop("imap", None)
    cfg = work / "config.toml"
    cfg.write_text(to_toml(data))
    tree = code or ROOT
    log = work / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "run"], cwd=tree,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env={**os.environ, "PYTHONPATH": str(tree)})
    try:
        wait_listening(proc, port, "mailbot run", log)
        time.sleep(2)  # start-up settled (templates compiled)
        body = the_mail(mail_mb)
        mails = [body.replace(b"\nMIME-Version", f"\nMessage-ID: <memc-{i}@orange.fr>\nMIME-Version".encode(), 1)
                 for i in range(n)]
        before = status_mb(proc.pid)
        codes: list[int] = []
        lock = threading.Lock()

        def send(raw: bytes) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=600) as c:
                    c.sendmail("gros.fichier@orange.fr", ["support@kalra-plus.com"], raw)
                    code = 250
            except smtplib.SMTPResponseException as exc:
                code = exc.smtp_code
            except (OSError, smtplib.SMTPException):
                code = 0
            with lock:
                codes.append(code)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=send, args=(m,)) for m in mails]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        del mails
        time.sleep(5)
        after = status_mb(proc.pid)
    finally:
        stop(proc)
    return {"concurrent": n, "mail_mb": round(len(body) / 1e6, 1), "max_data_sessions": max_data_sessions,
            "code": str(code) if code else "this checkout", "replies": {c: codes.count(c) for c in sorted(set(codes))},
            "rss_before_mb": before["VmRSS"], "peak_mb": after["VmHWM"], "held_after_mb": after["VmRSS"],
            "seconds": round(seconds, 1)}


def report(r: dict) -> str:
    return (f"{r['concurrent']} concurrent mails of {r['mail_mb']} MB, max_data_sessions="
            f"{r['max_data_sessions'] or 'shipped'} ({r['code']}): replies {r['replies']}; daemon RSS before "
            f"{r['rss_before_mb']} MB, peak {r['peak_mb']} MB, held 5 s after {r['held_after_mb']} MB; "
            f"{r['seconds']} s")
