"""Signed links in mail: the customer's status page of a case.

`/status/<REF>/<signature>`: the signature is an HMAC-SHA256, keyed with the
web secret (`[web]`), of the case reference and the case's secret reply token,
so a link cannot be guessed or moved to another case, and needs no account.
It carries no expiry of its own: the status page refuses it once the case's
retention has ended (its personal data erased), which is when it must stop
working. Written by the dispatcher into every customer mail when
`web.public_url` is set; checked by `mailbot web`.
"""

from __future__ import annotations

import hashlib
import hmac

from mailbot.config import Config


def status_signature(secret: str, ref: str, reply_token: str) -> str:
    msg = f"status|{ref.upper()}|{reply_token}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


def status_path(secret: str, ref: str, reply_token: str) -> str:
    return f"/status/{ref.upper()}/{status_signature(secret, ref, reply_token)}"


def status_url(config: Config, ref: str, reply_token: str) -> str:
    """The absolute link, or "" when no public URL is configured (no web side)."""
    if not config.web.public_url:
        return ""
    return config.web.public_url + status_path(config.web.resolved_secret(), ref, reply_token)


def status_signature_ok(secret: str, ref: str, reply_token: str, signature: str) -> bool:
    return hmac.compare_digest(status_signature(secret, ref, reply_token), signature or "")
