"""`mailbot run`: the SMTP listener, the pipe's local socket (mailbot.channels.local),
the IMAP pollers, the scheduler and the dispatcher in one process.

SIGTERM/SIGINT: stop accepting, let in-flight SMTP transactions and IMAP
batches finish (each one commits before it answers), stop the scheduler,
exit 0. SIGHUP: reload config.toml (brands, templates, limits, agents), in a
thread (the event loop goes on serving): the file is checked as `check-config`
checks it (every template rendered), and on any problem the reload is refused
and the running config kept. Every template is compiled when it is loaded, so
a template file edited later is not read until the next reload. Listener
address, pipe socket and mailbox changes need a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from mailbot import memory
from mailbot.app import App
from mailbot.config import Config, ConfigError, MissingSecret, load_config
from mailbot.ingest import analysis
from mailbot.ops import jobs
from mailbot.ops.checks import check_file
from mailbot.ops.loop_errors import ThrottledLoopErrors
from mailbot.outgoing import templating
from mailbot.outgoing.templating import Renderer, TemplateError

log = logging.getLogger("mailbot.daemon")
DRAIN_SECONDS = 30.0


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(path)
            sock.sendall(message.encode())
        except OSError:
            pass


def _run_job(app: App, name: str) -> None:
    fn = dict(jobs.JOBS).get(name) or dict(EXTRA_JOBS)[name]
    try:
        result = fn(app)
        log.debug("job done", extra={"job": name, "result": result})
    except Exception as exc:  # a failing job is retried at its next run
        log.warning("job failed: %s", exc, extra={"event": "job.failed", "job": name})


def _reconcile(app: App) -> str:
    from mailbot.channels.imap_check import reconcile_all

    return f"reconcile: {reconcile_all(app)} problems"


EXTRA_JOBS = (("reconcile", _reconcile),)


def job_intervals(app: App) -> dict[str, float]:
    """Seconds between two runs of each job `tick` runs (every one of `jobs.JOBS`), and of
    the daemon's own (IMAP reconciliation, when a mailbox is polled)."""
    s = app.config.scheduler
    intervals = {"outbox": s.outbox_interval, "sla_sweep": s.sla_interval, "digest": s.sla_interval,
                 "autoclose": s.housekeeping_interval, "retention": s.housekeeping_interval,
                 "letters": s.sla_interval, "alert_digests": s.sla_interval}
    missing = {name for name, _fn in jobs.JOBS} - intervals.keys()
    if missing:
        raise RuntimeError(f"jobs without an interval: {sorted(missing)}")
    if app.config.imap:
        intervals["reconcile"] = s.reconcile_interval
    return intervals


def start_scheduler(app: App) -> BackgroundScheduler:
    sched = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    intervals = job_intervals(app)
    for name, seconds in intervals.items():
        sched.add_job(_run_job, "interval", seconds=seconds, args=(app, name), id=name,
                      replace_existing=True, next_run_time=None if name == "reconcile" else _soon())
    sched.start()
    return sched


def _soon() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


class Daemon:
    def __init__(self, config: Config, config_path: str) -> None:
        self.config_path = config_path
        self.app = App.open(config)
        self.stopping = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ingest")
        self.pollers: list[Any] = []
        self.listeners: list[str] = []  # "smtp 127.0.0.1:2525"…: what the ready line lists
        self._reloading = threading.Lock()

    def reload(self) -> None:
        """SIGHUP, in a thread of its own: check the file, then swap the config."""
        with self._reloading:
            report = check_file(self.config_path)
            try:
                if report.errors:
                    raise ConfigError(self.config_path, report.errors)
                new = load_config(self.config_path)
                new.security.resolved_secret()
                renderer = templating.compiled(new)
            except (ConfigError, MissingSecret, TemplateError) as exc:
                why = "; ".join(exc.lines()) if isinstance(exc, ConfigError) else str(exc)
                log.error("reload refused, keeping the running config: %s", why,
                          extra={"event": "daemon.reload_refused"})
                return
            self.app.reconfigure(new, {Renderer: renderer})
            analysis.resize_pool(new)
            log.info("config reloaded", extra={"event": "daemon.reloaded", "path": self.config_path})

    def _compile_templates(self) -> None:
        """At start, beside the serving: every template compiled (see the module docstring)."""
        try:
            renderer = templating.compiled(self.app.config)
        except TemplateError as exc:  # check-config says the same; mail of that kind fails at dispatch
            log.error("a template does not compile: %s", exc, extra={"event": "daemon.template_error"})
            return
        with self._reloading:
            if templating.renderer(self.app).root == renderer.root:  # (unless a reload came first)
                self.app.derived[Renderer] = renderer
        log.info("templates compiled", extra={"event": "daemon.templates_compiled"})

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(ThrottledLoopErrors())  # e.g. out of file descriptors: not 16 MB of log
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: threading.Thread(
            target=self.reload, name="reload", daemon=True).start())
        server = handler = None
        threading.Thread(target=self._compile_templates, name="templates", daemon=True).start()
        self.app.warm_up()
        if self.app.config.smtp.enabled:
            from mailbot.channels.smtp import start_listener

            server, handler = await start_listener(self.app, self.executor)
            self.listen("lmtp" if self.app.config.smtp.lmtp else "smtp", server.sockets[0].getsockname())
        from mailbot.channels.local import start_local_socket

        local = await start_local_socket(self.app, self.executor)  # where `mailbot ingest` hands mail over
        if local is not None:
            self.listeners.append(f"pipe {local.path}")
        self._start_pollers()
        sched = start_scheduler(self.app)
        metrics = self._start_http()
        if metrics is not None:
            self.listen("http", metrics.server_address)
        mailboxes = [p.cfg.account_key for p in self.pollers]
        log.info("ready: %s", ", ".join(self.listeners + [f"imap {m}" for m in mailboxes]) or "no listener",
                 extra={"event": "daemon.ready", "listeners": self.listeners, "imap": mailboxes,
                        "smtp_port": server.sockets[0].getsockname()[1] if server else None})
        sd_notify("READY=1")
        watchdog = asyncio.create_task(self._watchdog())
        await self.stopping.wait()
        log.info("stopping: draining in-flight work", extra={"event": "daemon.stopping"})
        sd_notify("STOPPING=1")
        self.app.stopping.set()  # a dispatcher run with a backlog ends after the mail it is sending
        watchdog.cancel()
        if local is not None:
            await local.close()
        if server is not None:
            server.close()
        deadline = loop.time() + DRAIN_SECONDS
        while any(h is not None and h.in_flight for h in (handler, local and local.handler)) \
                and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for p in self.pollers:
            await loop.run_in_executor(None, p.stop)
        await loop.run_in_executor(None, analysis.shutdown)
        sched.shutdown(wait=True)
        if metrics is not None:
            metrics.shutdown()
        self.executor.shutdown(wait=True)
        self.app.close()
        log.info("stopped", extra={"event": "daemon.stopped"})
        return 0

    def listen(self, kind: str, address: Any) -> None:
        """Note a listener for the ready line: `kind host:port` as bound (port 0 resolved)."""
        host, port = address[0], address[1]
        self.listeners.append(f"{kind} {'[' + host + ']' if ':' in host else host}:{port}")

    def _start_pollers(self) -> None:
        if not self.app.config.imap:
            return
        from mailbot.channels.imap import ImapPoller

        for cfg in self.app.config.imap:
            poller = ImapPoller(self.app, cfg)
            poller.start()
            self.pollers.append(poller)
        # Analysis workers for IMAP batches: started now, so a backlog waiting at start-up
        # does not wait for them (mailbot.ingest.analysis).
        threading.Thread(target=analysis.warm_up, args=(self.app.config,), name="analysis-warm-up",
                         daemon=True).start()

    def _start_http(self) -> Any:
        if not self.app.config.http.enabled:
            return None
        from mailbot.ops.http_listener import start_http

        return start_http(self.app)

    async def _watchdog(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):  # as sd_watchdog_enabled(3)
            return
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(usec / 2_000_000)


def run_daemon(config: Config, config_path: str) -> int:
    memory.map_large_buffers()  # a large mail's buffers go back to the system when freed (mailbot.memory)
    return asyncio.run(Daemon(config, config_path).serve())
