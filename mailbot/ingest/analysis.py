"""The CPU half of ingest: raw bytes → parsed, classified, routed and extracted.

Everything here is pure (no database, no clock): hash the raw bytes, parse,
compute the dedupe key, classify, find the brands the mail is for, and extract
the complaint facts for each of them, with what a new case there would need
(its deadlines, `sla.Opening`) and the body as it is stored (masked). `ingest`
then writes the result in one transaction, copying what was computed ahead.

Batches (IMAP, `mailbot import`) can be analysed in worker processes
(`[ingest] workers`) while the previous batch is being written: `submit`
returns at once, `Pending.result()` waits. Single mails (SMTP, pipe) are
analysed in the calling process: a round trip to a worker would only add
latency. A worker that dies takes nothing with it: the batch is analysed
again in the calling process.
"""

from __future__ import annotations

import email.message
import functools
import hashlib
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from mailbot import business_days
from mailbot.cases import sla
from mailbot.cases.tokens import is_agent_token
from mailbot.config import Config
from mailbot.mail.classify import Verdict, classify
from mailbot.mail.extract import Extracted, extract_for
from mailbot.mail.masking import stored_body
from mailbot.mail.parsing import ParsedMail, Unparseable, parse
from mailbot.mail.routing import route_brands

log = logging.getLogger("mailbot.analysis")

MIN_BATCH_FOR_WORKERS = 16  # smaller batches are analysed in the calling process
MAX_RAW_FOR_WORKERS = 5_000_000  # bigger mails are not copied to a worker and back
CHUNK = 25  # mails per task sent to a worker


@dataclass(frozen=True)
class Received:
    """One unit of work: a raw mail as a channel handed it over."""

    raw: bytes
    source: str
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = ()
    received_at: datetime | None = None
    mailbox_brand: str | None = None


@dataclass
class Analysis:
    """What the pure half found; `facts` holds the extraction per brand key, when done,
    and `openings` a new case's deadlines there."""

    digest: str
    parsed: ParsedMail | None
    parse_error: str | None
    dedupe_key: str
    verdict: Verdict | None = None
    facts: dict[str, Extracted] = field(default_factory=dict)
    openings: dict[str, sla.Opening] = field(default_factory=dict)
    analysed_by: int = field(default_factory=os.getpid)  # the process that did it


def content_fingerprint(parsed: ParsedMail) -> str:
    """Identity of a mail independent of transport headers (Received, Return-Path…)."""
    h = hashlib.sha256()
    for part in (parsed.from_addr, parsed.subject, parsed.text, parsed.html or ""):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    for att in parsed.attachments:
        h.update(att.filename.encode("utf-8", "surrogatepass") + b"\0")
        h.update(hashlib.sha256(att.data).digest())
    return h.hexdigest()[:32]


def dedupe_key(digest: str, parsed: ParsedMail | None, brands: Sequence[str] = ()) -> str:
    """Message-ID plus content, plus the brands the delivery is for: the same mail twice
    (MTA retry, IMAP re-fetch) is one record, but two different mails that reuse a
    Message-ID are both kept, and so are the deliveries of one mail to each brand (the
    pipe transport and one mailbox per brand deliver it once per brand)."""
    if parsed is not None and parsed.message_id:
        key = f"mid:{parsed.message_id[:800]}|{content_fingerprint(parsed)}"
    else:
        key = f"sha:{digest}"
    return f"{key}|{','.join(sorted(brands))}" if brands else key


def analyse(config: Config, item: Received, *, with_facts: bool = False) -> Analysis:
    """Parse and classify one mail; with `with_facts` (and a `received_at`), also route
    it and extract its facts for each brand it is for. Never raises."""
    digest = hashlib.sha256(item.raw).hexdigest()
    try:
        parsed: ParsedMail | None = parse(item.raw)
        error = None
    except Unparseable as exc:
        parsed, error = None, str(exc)
    except Exception as exc:  # defensive: parsing must never take ingest down
        parsed, error = None, f"parser crashed: {type(exc).__name__}: {exc}"[:1000]
    try:
        routes = route_brands(config, parsed, item.envelope_to, item.mailbox_brand)
    except Exception:  # noqa: BLE001 - ingest routes again and quarantines what fails
        log.exception("routing failed; ingest will redo it")
        routes = []
    result = Analysis(digest, parsed, error, dedupe_key(digest, parsed, [r.brand.key for r in routes]))
    if parsed is None:
        return result
    try:
        result.verdict = classify(parsed.message, envelope_from=item.envelope_from,
                                  own_addresses=config.own_addresses)
    except Exception:  # noqa: BLE001 - ingest does it again and quarantines what fails
        log.exception("classification failed; ingest will redo it")
        return result
    if not with_facts:
        return result
    try:
        result.parsed = replace(parsed, masked_text=stored_body(parsed.text))
    except Exception:  # noqa: BLE001 - ingest masks it again
        log.exception("masking failed; ingest will redo it")
    if item.received_at is not None and not result.verdict.automatic:
        try:  # a failure here loses only the facts, which ingest extracts again if needed
            for route in routes:
                if not is_agent_token(route.token):
                    brand = route.brand
                    facts = result.facts[brand.key] = extract_for(brand, parsed, item.received_at)
                    result.openings[brand.key] = sla.opening(brand, business_days.for_brand(brand),
                                                             item.received_at, facts.category)
        except Exception:  # noqa: BLE001
            log.exception("extraction failed; ingest will redo it")
            result.facts, result.openings = {}, {}
    return result


def _headers_only(msg: email.message.Message) -> email.message.Message:
    """The headers of a message without its payload (what ingest reads after analysis)."""
    slim = email.message.Message(policy=msg.policy)
    slim._headers = list(msg._headers)  # type: ignore[attr-defined]
    return slim


def _analyse_chunk(config: Config, items: Sequence[Received]) -> list[Analysis]:
    """Worker side: analyse, then drop the payload tree, which the parent does not need."""
    out = []
    for item in items:
        result = analyse(config, item, with_facts=True)
        # Without a verdict ingest classifies again, on the same whole message.
        if result.parsed is not None and result.verdict is not None:
            result.parsed = replace(result.parsed, message=_headers_only(result.parsed.message))
        out.append(result)
    return out


class Pending:
    """The analysis of a batch: under way in the worker processes (its chunks of CHUNK
    mails all handed to the pool at once, which queues them), or done already.
    `result()` waits for the chunks in order; one whose worker died or failed is
    analysed in this process instead: nothing is lost or stuck."""

    def __init__(self, config: Config, items: Sequence[Received],
                 futures: Sequence[tuple[Sequence[Received], Future[list[Analysis]]]] = (),
                 done: list[Analysis] | None = None) -> None:
        self.config, self.items, self._futures, self._done = config, items, futures, done

    def result(self) -> list[Analysis]:
        if self._done is None:
            self._done = [a for chunk, future in self._futures for a in self._collect(future, chunk)]
        return self._done

    def _collect(self, future: Future[list[Analysis]], chunk: Sequence[Received]) -> list[Analysis]:
        try:
            return future.result()
        except BrokenProcessPool:
            log.error("an analysis worker died; analysing its mails here")
            _reset_pool()
        except Exception:
            log.exception("an analysis worker failed; analysing its mails here")
        return _here(self.config, chunk)


def _here(config: Config, items: Sequence[Received]) -> list[Analysis]:
    """Analysis in this process (facts are left to ingest, which needs them only for a
    new case)."""
    return [analyse(config, it) for it in items]


@functools.cache
def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (systemd's `CPUAffinity=`,
    `taskset`, a container's cpuset), not every CPU of the machine. Read once: the
    workers are sized when the daemon starts (a mask changed later would otherwise
    start a second pool beside the first, which stays up idle)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity masks on this platform
        return os.cpu_count() or 1


def worker_count(config: Config) -> int:
    """`[ingest] workers`: -1 (the default) is one per usable CPU beyond the first, at most 4."""
    wanted = config.ingest.workers
    if wanted < 0:
        return min(4, max(0, usable_cpus() - 1))
    return wanted


def submit(config: Config, items: Sequence[Received]) -> Pending:
    """Start analysing a batch; in the workers when it is worth it. Only workers extract
    the facts ahead (for every brand addressed); in this process that is left to
    ingest, which needs them only when a case is opened."""
    workers = worker_count(config)
    if workers == 0 or len(items) < MIN_BATCH_FOR_WORKERS or any(
            len(it.raw) > MAX_RAW_FOR_WORKERS for it in items):
        return Pending(config, items, done=_here(config, items))
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    try:
        pool = _pool(workers)
        return Pending(config, items, [(chunk, pool.submit(_analyse_chunk, config, chunk)) for chunk in chunks])
    except (BrokenProcessPool, RuntimeError, OSError) as exc:
        log.error("analysis workers unavailable (%s); analysing here", exc)
        _reset_pool()
        return Pending(config, items, done=_here(config, items))


def warm_up(config: Config) -> None:
    """Start the workers now rather than on the first big batch (the daemon does this at
    start-up, so a backlog waiting at start does not pay for it)."""
    workers = worker_count(config)
    if not workers:
        return
    try:
        pool = _pool(workers)
        for f in [pool.submit(_warm_worker, config) for _ in range(workers * 2)]:
            f.result()
    except Exception as exc:  # noqa: BLE001 - batches are then analysed in-process
        log.error("analysis workers could not start (%s); analysing in the daemon", exc)
        _reset_pool()


def _warm_worker(config: Config) -> int:
    """In a worker: build the brands' calendars, with this year's and next year's
    holidays, before the first batch needs them (as App.warm_up does in the daemon)."""
    year = date.today().year
    for brand in config.brands:
        for y in (year, year + 1):
            business_days.for_brand(brand).holiday_name(date(y, 1, 1))
    return os.getpid()


_POOL: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per process (shared by every App), started on first use. Spawned, not
    forked: the daemon has threads and open connections a fork would copy."""
    with _POOL_LOCK:
        pool = _POOL.get(workers)
        if pool is None:
            pool = _POOL[workers] = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init, initargs=(os.getpid(),))
            # In a process that is itself a multiprocessing child, exiting joins every
            # child process: stop the workers first, or that join waits forever. Before
            # the pool's own queues are closed (their finalizers run at priority 10).
            multiprocessing.util.Finalize(pool, pool.shutdown, kwargs={"cancel_futures": True},
                                          exitpriority=100)
        return pool


def _worker_init(parent: int) -> None:
    """A worker leaves as soon as its parent is gone, even when the parent was killed
    (SIGKILL, OOM): it is then re-parented, which a thread notices within 0.2 s."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


_POOL_LOCK = threading.Lock()


def resize_pool(config: Config) -> None:
    """After a reload: a pool of another size than `config` asks for is shut down (its
    chunks in hand still finish); the next big batch starts the new one."""
    wanted = worker_count(config)
    with _POOL_LOCK:
        for workers in [w for w in _POOL if w != wanted]:
            _POOL.pop(workers).shutdown(wait=False)


def _reset_pool() -> None:
    for pool in _POOL.values():  # (cancelling work of a broken pool can hang it on Python 3.11)
        pool.shutdown(wait=False)
    _POOL.clear()


def shutdown() -> None:
    """Stop the workers (the daemon calls this on exit; idle workers cost nothing)."""
    for pool in _POOL.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _POOL.clear()
