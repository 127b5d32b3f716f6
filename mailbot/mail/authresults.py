"""Does the MTA the operator trusts vouch for a mail's From domain? (RFC 8601 headers)

The receiving MTA (with OpenDKIM, OpenDMARC, an SPF policy daemon…) prepends an
`Authentication-Results: <authserv-id>; dkim=pass header.d=…; spf=pass
smtp.mailfrom=…; dmarc=pass header.from=…` header to each mail. Only that header is
read here: `security.trusted_authserv_id` names it, and only the topmost one with that
id counts — anything below it, a "pass" of the same id included, came from outside.
Without a trusted id nothing is trusted.

The From domain is vouched for when that header shows `dkim=pass` (`header.d` or
`header.i`), `spf=pass` (`smtp.mailfrom`) or `dmarc=pass` (`header.from`) for exactly
that domain: look-alike (`evilkalra-plus.com`), suffix (`kalra-plus.com.evil.test`) and
parent domains do not count; relaxed alignment comes only through the MTA's own DMARC
check, which knows the public suffix list. Used for agents' mail
(`require_authenticated_agents`) and for a customer's reply matched only by the case
reference in its subject (mailbot.mail.routing).
"""

from __future__ import annotations

import re
from email.message import Message

_COMMENT = re.compile(r"\([^()]*\)")
# A name is read from the start of its run (the look-behind): a long run with no "=" is
# then read once, not once from each of its characters (tests/test_regex_fuzz.py).
_PAIR = re.compile(r"(?<![A-Za-z0-9._/-])([A-Za-z0-9._/-]+)[^\S\n]*+=[^\S\n]*+(\"[^\"]*\"|[^\s;]+)")
_VOUCHING = {"dkim": ("header.d", "header.i"), "spf": ("smtp.mailfrom",), "dmarc": ("header.from",)}


def trusted_results(message: Message, trusted_authserv_id: str) -> list[list[tuple[str, str]]] | None:
    """The results of the topmost Authentication-Results header whose authserv-id is the
    trusted one, each as its `(name, value)` pairs (`("dkim", "pass"), ("header.d", …)`),
    or None when no such header exists."""
    want = trusted_authserv_id.strip().lower()
    for value in message.get_all("Authentication-Results", []):
        text = _COMMENT.sub(" ", str(value)[:4000])
        head, _, rest = text.partition(";")
        parts = head.split()
        if not parts or parts[0].lower() != want:
            continue
        results = []
        for resinfo in rest.split(";"):
            pairs = [(k.lower(), v.strip('"').strip()) for k, v in _PAIR.findall(resinfo)]
            if pairs:
                results.append(pairs)
        return results
    return None


def domain_of(value: str) -> str:
    """The domain of `user@domain`, `@domain` or `domain`, lower-case."""
    return value.rpartition("@")[2].strip().rstrip(".").lower()


def from_unverified(message: Message, from_addr: str, trusted_authserv_id: str | None) -> str | None:
    """None when the trusted MTA vouches for the domain of `from_addr`, else the reason why not."""
    if not trusted_authserv_id:
        return "no trusted_authserv_id is set, so no Authentication-Results header is trusted"
    domain = domain_of(from_addr)
    results = trusted_results(message, trusted_authserv_id)
    if results is None:
        return f"no Authentication-Results header from {trusted_authserv_id}"
    for pairs in results:
        method, result = pairs[0][0].split("/")[0], pairs[0][1].lower()
        if result != "pass" or method not in _VOUCHING:
            continue
        if domain and any(k in _VOUCHING[method] and domain_of(v) == domain for k, v in pairs[1:]):
            return None
    return f"no DKIM/SPF/DMARC pass for {domain} from {trusted_authserv_id}"
