#!/usr/bin/env python3
"""Peak RSS while ingesting mails with a few huge attachments, against the stdlib parser alone.

    python bench/memory.py [--n 2000] [--big 10] [--big-mb 25] [--db sqlite|pg|URL] [--json]
    python bench/memory.py --concurrent 24 [--mail-mb 20] [--max-data-sessions K] [--code DIR] [--json]

(The second form: the daemon under N concurrent SMTP mails, bench/memory_concurrent.py.)

N generated complaint mails (bench/gen_mails.generate_bytes), of which `--big`
(default 10, spread evenly over the run) carry a `--big-mb` MB (default 25 MB,
10^6 bytes, incompressible) PDF attachment — base64 on the wire, ~34 MB per
mail. Each side runs in its own fresh process, so its peak RSS (VmHWM) is its own:

- baseline: `email.message_from_bytes(policy=default)`, `get_body()` and
  decoding every attachment, mail after mail;
- mailbot: `mailbot.ingest.ingest(app, raw, "bench")` mail after mail (one
  transaction each, as SMTP does) into a fresh database.

The big mails are written to files once, before either side runs, and read
(raw bytes, as a channel hands them over) only when their turn comes; the
small ones are generated in memory by both sides alike. RSS is sampled at 25/50/75/100 % of the run to show whether it
grows. Aim: mailbot's peak under 250 MB.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

from _common import rss_kb, scratch_dir, stdlib_handle
from gen_mails import fake_pdf, generate_bytes

AIM_MB = 250


def big_mail(i: int, size: int) -> bytes:
    rng = random.Random(i)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = f"Client Gros Fichier {i} <gros.fichier{i}@orange.fr>"
    msg["To"] = "support@kalra-plus.com"
    msg["Subject"] = f"Réclamation avec justificatifs numérisés {i}"
    msg["Date"] = "Mon, 02 Jun 2025 09:00:00 +0200"
    msg["Message-ID"] = f"<bench-big-{i:05d}@orange.fr>"
    msg.set_content("Bonjour,\n\nVeuillez trouver ci-joint le relevé scanné concernant le virement "
                    f"VIR-2025-{i:05d} de 1 250,00 € non reçu le 3 mai 2025.\n\nCordialement,\nClient\n")
    msg.add_attachment(fake_pdf(rng, size, "releve"), maintype="application", subtype="pdf",
                       filename=f"releve_scanne_{i}.pdf")
    return msg.as_bytes()


def big_positions(n: int, big: int) -> list[int]:
    step = n // big if big else 0
    return [step // 2 + k * step for k in range(big)]


def write_big(n: int, big: int, big_size: int, workdir: Path) -> None:
    for i in big_positions(n, big):
        path = workdir / f"big-{i}-{big_size}.eml"
        if not path.exists():
            path.write_bytes(big_mail(i, big_size))


def mails(n: int, big: int, big_size: int, workdir: Path) -> Iterator[bytes]:
    """The N mails in order; a big one is read from its file only when its turn comes."""
    small = generate_bytes(n)
    big_at = set(big_positions(n, big))
    for i in range(n):
        yield (workdir / f"big-{i}-{big_size}.eml").read_bytes() if i in big_at else small[i]
        small[i] = b""  # the caller holds the one in flight only


def child(side: str, n: int, big: int, big_size: int, db: str, workdir: Path) -> dict:
    handle = stdlib_handle
    ctx = None
    if side == "mailbot":
        from _common import bench_app, database

        from mailbot.ingest.pipeline import ingest

        ctx = database(db, str(workdir))
        app = bench_app(ctx.__enter__(), str(workdir))

        def handle(raw: bytes) -> None:
            ingest(app, raw, "bench")

    gc.collect()
    start_rss, _ = rss_kb()
    checkpoints = {n * q // 4: q * 25 for q in (1, 2, 3, 4)}
    samples = []
    t0 = time.perf_counter()
    for i, raw in enumerate(mails(n, big, big_size, workdir), 1):
        handle(raw)
        del raw
        if i in checkpoints:
            cur, peak = rss_kb()
            samples.append({"percent": checkpoints[i], "rss_mb": round(cur / 1024, 1),
                            "peak_mb": round(peak / 1024, 1)})
    elapsed = time.perf_counter() - t0
    if side == "mailbot":
        app.close()
        ctx.__exit__(None, None, None)
    _, peak = rss_kb()
    return {"side": side, "start_rss_mb": round(start_rss / 1024, 1), "peak_mb": round(peak / 1024, 1),
            "samples": samples, "seconds": round(elapsed, 1)}


def run_child(side: str, args: argparse.Namespace, workdir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", side, "--n", str(args.n), "--big", str(args.big),
                          "--big-mb", str(args.big_mb), "--db", args.db, "--workdir", str(workdir)],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{side} child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--big", type=int, default=10, help="mails with a huge attachment")
    ap.add_argument("--big-mb", type=float, default=25.0, help="size of each huge attachment, MB (10^6 bytes)")
    ap.add_argument("--db", default="sqlite", help="sqlite (default), pg (throwaway schema) or a URL")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--concurrent", type=int, help="N mails at once to a running daemon (bench/memory_concurrent.py)")
    ap.add_argument("--mail-mb", type=float, default=20.0, help="with --concurrent: each mail's size on the wire, MB")
    ap.add_argument("--max-data-sessions", type=int, help="with --concurrent: [smtp] max_data_sessions")
    ap.add_argument("--code", type=Path, help="with --concurrent: run the daemon from this checkout")
    ap.add_argument("--child", choices=["stdlib", "mailbot"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.concurrent:
        import memory_concurrent

        r = memory_concurrent.run(args.concurrent, args.mail_mb, args.max_data_sessions, args.code)
        print(json.dumps(r) if args.json else memory_concurrent.report(r))
        return
    big_size = int(args.big_mb * 1_000_000)
    if args.child:
        print(json.dumps(child(args.child, args.n, args.big, big_size, args.db, Path(args.workdir))))
        return

    workdir = Path(scratch_dir(prefix="mailbot-bench-mem-"))
    try:
        write_big(args.n, args.big, big_size, workdir)
        base = run_child("stdlib", args, workdir)
        mb = run_child("mailbot", args, workdir)
    finally:
        for f in workdir.glob("big-*.eml"):
            f.unlink()
    growth = round(mb["samples"][-1]["rss_mb"] - mb["samples"][0]["rss_mb"], 1)
    result = {"n": args.n, "big": args.big, "big_mb": args.big_mb, "peak_mb": mb["peak_mb"],
              "baseline_peak_mb": base["peak_mb"], "ratio": round(mb["peak_mb"] / base["peak_mb"], 2),
              "rss_growth_25_to_100_mb": growth, "under_aim": mb["peak_mb"] < AIM_MB,
              "mailbot": mb, "baseline": base}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.n} mails, {args.big} with a {args.big_mb:g} MB attachment")
    for r in (base, mb):
        name = "baseline (stdlib parse + body + attachments)" if r is base else "mailbot ingest"
        line = ", ".join(f"{s['percent']}%: {s['rss_mb']} MB" for s in r["samples"])
        print(f"  {name}: peak RSS {r['peak_mb']} MB (start {r['start_rss_mb']} MB; RSS {line}; {r['seconds']} s)")
    print(f"  ratio mailbot/baseline peak RSS: {result['ratio']}; RSS growth 25%→100%: {growth} MB; "
          f"aim < {AIM_MB} MB: {'met' if result['under_aim'] else 'NOT met'}")


if __name__ == "__main__":
    main()
