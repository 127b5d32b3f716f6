"""`mailbot web`: serve the web side with uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import sys

from mailbot.app import App
from mailbot.config import Config
from mailbot.exitcodes import EX_OK, EX_USAGE

log = logging.getLogger("mailbot.web")


def serve(config: Config, host: str | None = None, port: int | None = None) -> int:
    """Refuses to start without the web secret (no default); the database must be
    reachable at start (the CLI answers 75 otherwise), later outages give 503 pages."""
    import uvicorn

    from mailbot.web.app import create_app

    try:
        secret = config.web.resolved_secret()
    except ValueError as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return EX_USAGE
    host = host or config.web.host
    port = config.web.port if port is None else port
    app = App.open(config)
    base_url = config.web.public_url or f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    asgi = create_app(app, secret=secret, base_url=base_url)
    log.info("web listening", extra={"host": host, "port": port, "public_url": base_url})
    # No access log: paths carry status-link signatures and sign-in tokens.
    uvicorn.run(asgi, host=host, port=port, log_config=None, access_log=False, server_header=False,
                proxy_headers=False, forwarded_allow_ips="", timeout_graceful_shutdown=10)
    app.close()
    return EX_OK
