"""Signed agent tokens for the Reply-To plus-address of agent notifications.

`a<case>-<expiry day>-<signature>`: the signature is an HMAC-SHA256 of the
case id, the agent's address and the expiry, keyed with the configured
secret, so a token cannot be guessed, reused for another case, or used by
another agent. Lower-case only: MTAs may fold the local part's case.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

_TOKEN = re.compile(r"^a(\d{1,12})-(\d{1,7})-([0-9a-f]{20})$")
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def _sign(secret: str, case_id: int, agent: str, day: int) -> str:
    msg = f"{case_id}|{agent.lower()}|{day}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:20]


def make_agent_token(secret: str, case_id: int, agent: str, expires: datetime) -> str:
    day = (expires - _EPOCH).days
    return f"a{case_id}-{day}-{_sign(secret, case_id, agent, day)}"


def is_agent_token(token: str | None) -> bool:
    return bool(token and _TOKEN.match(token))


@dataclass(frozen=True)
class TokenCheck:
    case_id: int | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.case_id is not None


def token_case_id(token: str | None) -> int | None:
    """The case id a token names (unverified: only to know which case a forgery aims at)."""
    m = _TOKEN.match(token or "")
    return int(m.group(1)) if m else None


def issued_to(secret: str, token: str, candidates: Iterable[str], now: datetime) -> str | None:
    """Which of `candidates` the (unexpired) token was issued to, if any: a staff mail
    forwarded inside the team is answered by a colleague of its recipient."""
    for address in candidates:
        if check_agent_token(secret, token, address, now).ok:
            return address.lower()
    return None


def check_agent_token(secret: str, token: str, sender: str, now: datetime) -> TokenCheck:
    """Valid only for the agent it was made for, and before its expiry."""
    m = _TOKEN.match(token or "")
    if not m:
        return TokenCheck(None, "not an agent token")
    case_id, day, sig = int(m.group(1)), int(m.group(2)), m.group(3)
    if not hmac.compare_digest(sig, _sign(secret, case_id, sender, day)):
        return TokenCheck(None, f"token was not issued to {sender}")
    if (now - _EPOCH).days > day:
        return TokenCheck(None, "token expired")
    return TokenCheck(case_id, "valid agent token")
