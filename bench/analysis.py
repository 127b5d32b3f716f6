#!/usr/bin/env python3
"""The analysis workers' CPU per mail, in this process, against the stdlib parse alone.

    python bench/analysis.py [--n 3000] [--rounds 3] [--stages] [--json]

What a worker does with each chunk of CHUNK mails (`analysis._analyse_chunk`:
parse, route, classify, mask, extract, deadlines, the payload dropped) on N
bench mails, received 29 s apart from 09:00 on a Monday as a day's drain is,
after a warm-up of 200 mails; the figure is the CPU time of the best round per
mail. The result's pickling back to the daemon is not counted.

Baseline, same run: `email.message_from_bytes` of the same mails (what
mail-parser calls first), the part of the parse no analysis can skip.
`--stages` adds the CPU of each step, timed one mail at a time (the sum is a
little more than the whole: the clock is read around each step).
"""

from __future__ import annotations

import argparse
import email
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import bench_app
from gen_mails import generate_bytes

from mailbot import business_days
from mailbot.cases import sla
from mailbot.cases.tokens import is_agent_token
from mailbot.ingest import analysis
from mailbot.ingest.analysis import CHUNK, Received
from mailbot.mail.classify import classify
from mailbot.mail.extract import extract_for
from mailbot.mail.masking import stored_body
from mailbot.mail.parsing import parse
from mailbot.mail.routing import route_brands

START = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Paris


def chunks_cpu(config: Any, items: list[Received]) -> float:
    t0 = time.process_time()
    for i in range(0, len(items), CHUNK):
        analysis._analyse_chunk(config, items[i:i + CHUNK])  # noqa: SLF001 - what a worker runs
    return time.process_time() - t0


def stdlib_cpu(raws: list[bytes]) -> float:
    t0 = time.process_time()
    for raw in raws:
        email.message_from_bytes(raw)
    return time.process_time() - t0


def stages(config: Any, items: list[Received]) -> dict[str, float]:
    """CPU seconds of each step of `analysis.analyse`, summed over `items`."""
    spent: dict[str, float] = {}

    def timed(step: str, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        out = work(*args, **kwargs)
        spent[step] = spent.get(step, 0.0) + time.process_time() - t0
        return out

    for it in items:
        timed("sha256", hashlib.sha256, it.raw)
        parsed = timed("parse", parse, it.raw)
        routes = timed("route+dedupe", route_brands, config, parsed, it.envelope_to, it.mailbox_brand)
        timed("route+dedupe", analysis.dedupe_key, "", parsed, [r.brand.key for r in routes])
        timed("classify", classify, parsed.message, envelope_from=it.envelope_from,
              own_addresses=config.own_addresses)
        timed("mask", stored_body, parsed.text)
        for route in routes:
            if not is_agent_token(route.token):
                facts = timed("extract", extract_for, route.brand, parsed, it.received_at)
                timed("sla", sla.opening, route.brand, business_days.for_brand(route.brand), it.received_at,
                      facts.category)
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    config = bench_app().config
    raws = generate_bytes(args.n)
    items = [Received(raw, "imap:bench", received_at=START + timedelta(seconds=29 * i)) for i, raw in enumerate(raws)]
    analysis._analyse_chunk(config, items[:200])  # noqa: SLF001 - warm-up
    worker = min(chunks_cpu(config, items) for _ in range(args.rounds)) / args.n * 1000
    bare = min(stdlib_cpu(raws) for _ in range(args.rounds)) / args.n * 1000
    result: dict[str, object] = {"n": args.n, "analysis_cpu_ms_per_mail": round(worker, 3),
                                 "stdlib_parse_cpu_ms_per_mail": round(bare, 3), "ratio": round(bare / worker, 3)}
    if args.stages:
        result["stages_ms_per_mail"] = {k: round(v / args.n * 1000, 3) for k, v in stages(config, items).items()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.n} bench mails analysed as a worker does (chunks of {CHUNK}), CPU of this process")
    print(f"  mailbot analysis:             {result['analysis_cpu_ms_per_mail']:>7} ms/mail (best of {args.rounds})")
    print(f"  stdlib message_from_bytes:    {result['stdlib_parse_cpu_ms_per_mail']:>7} ms/mail")
    print(f"  ratio stdlib/mailbot: {result['ratio']}")
    for step, ms in dict(result.get("stages_ms_per_mail") or {}).items():
        print(f"    {step:<14} {ms:>7} ms/mail")


if __name__ == "__main__":
    main()
