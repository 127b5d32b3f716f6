"""`mailbot postfix-maps`: the Postfix lookup tables that put Postfix in front of mailbot,
made from the config so they cannot drift from the brands' addresses.

- `transport`: each brand address -> mailbot's listener (`smtp:[HOST]:PORT`, or
  `lmtp:inet:HOST:PORT` with `[smtp] lmtp = true`);
- `recipients`: each brand address -> OK, for `relay_recipient_maps`: Postfix then
  refuses any other address of the brands' domains at RCPT time (550), instead of
  accepting it and bouncing mailbot's refusal to a possibly forged sender.

With `recipient_delimiter = +`, `support+<token>@…` matches the `support@…` lines of both.
"""

from __future__ import annotations

from mailbot.config import Config


def next_hop(config: Config) -> str:
    """mailbot's listener as a Postfix transport (`smtp:[127.0.0.1]:2525`)."""
    smtp = config.smtp
    host = "127.0.0.1" if smtp.host in ("0.0.0.0", "::", "") else smtp.host
    return f"lmtp:inet:{host}:{smtp.port}" if smtp.lmtp else f"smtp:[{host}]:{smtp.port}"


def _addresses(config: Config) -> list[str]:
    return [a for b in config.brands for a in b.addresses]


def transport_map(config: Config, hop: str | None = None) -> str:
    width = max(len(a) for a in _addresses(config)) + 3
    return "".join(f"{a:<{width}}{hop or next_hop(config)}\n" for a in _addresses(config))


def recipients_map(config: Config) -> str:
    width = max(len(a) for a in _addresses(config)) + 3
    return "".join(f"{a:<{width}}OK\n" for a in _addresses(config))


def domains(config: Config) -> list[str]:
    """The brands' domains, for `relay_domains`."""
    return list(dict.fromkeys(a.rpartition("@")[2] for a in _addresses(config)))
