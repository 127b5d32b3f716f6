"""`check-config`: what cannot work (errors) and what exceeds the regulator's limits (warnings).

`check_file` reports every problem of a file in one run: the schema's, the checks
across keys, and these (templates rendered, staff addresses, regulator's limits),
which run on whatever part of the file validated. Each problem carries its line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mailbot.config import (
    BrandConfig,
    ConfigError,
    MissingSecret,
    Parts,
    Problem,
    SecurityConfig,
    did_you_mean,
    examine,
    locate,
    read_config_file,
)
from mailbot.outgoing.templating import Renderer

# French regulator's outer limits (ACPR recommendation 2022-R-01; payment services: CMF L.133-45).
ACK_MAX_BUSINESS_DAYS = 10
ANSWER_MAX_BUSINESS_DAYS = 42  # two months ≈ 42 business days
PAYMENT_MAX_DAYS, PAYMENT_MAX_EXCEPTIONAL = 15, 35


@dataclass
class Report:
    """What `check-config` found in one file."""

    path: str
    errors: list[Problem]
    warnings: list[Problem]
    parts: Parts | None


def check_file(path: str) -> Report:
    """Every error and warning of the config file at `path`, with their lines."""
    try:
        data, text = read_config_file(path)
    except ConfigError as exc:
        return Report(path, exc.problems, [], None)
    parts, errors = examine(data, path)
    more, warnings = check_parts(parts, Path(path).resolve().parent)
    return Report(path, _by_line(locate(errors + more, data, text)), _by_line(locate(warnings, data, text)), parts)


def _by_line(problems: list[Problem]) -> list[Problem]:
    """Top to bottom of the file; those with no line of the file (templates) last."""
    return sorted(problems, key=lambda p: p.line or 1 << 30)


def check_parts(parts: Parts, base_dir: Path) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) beyond the schema: templates, staff, regulator's limits, secrets."""
    errors: list[Problem] = []
    warnings = [w for i, b in parts.brands for w in sla_warnings(b, i)]
    errors += template_problems(parts, base_dir)
    for i, b in parts.brands:
        keys = [c.key for c in b.categories]
        if b.categories and b.default_category not in keys:
            errors.append(Problem(("brands", i, "default_category"),
                                  f"{b.default_category!r} is not one of the brand's category keys "
                                  f"({', '.join(keys)}){did_you_mean(b.default_category, keys)}"))
        errors += staff_problems(parts, i, b)
        mediator_errors, mediator_warnings = mediator_problems(b, i)
        errors += mediator_errors
        warnings += mediator_warnings
    secret_errors, secret_warnings = secret_problems(parts, base_dir)
    return errors + secret_errors + web_problems(parts), warnings + secret_warnings + smtp_wait_warnings(parts)


def smtp_wait_warnings(parts: Parts) -> list[Problem]:
    """A DATA waiting for its turn longer than the idle timeout is cut by the idle timer
    rather than told 451: its MTA retries either way, so a warning, not an error (the
    pipe's own limit is an error: config.py, `mailbot ingest` has no MTA behind the cut)."""
    smtp = parts.section("smtp")
    if smtp.data_wait < smtp.idle_timeout:
        return []
    return [Problem(("smtp", "data_wait"), f"is not under smtp.idle_timeout ({smtp.idle_timeout:g} s): a mail "
                    "waiting for its turn is cut by the idle timer instead of hearing 451 (its MTA retries "
                    "either way); lower data_wait with idle_timeout")]


def web_problems(parts: Parts) -> list[Problem]:
    """Customer mail links to the status page only with the key that signs the links."""
    web = parts.section("web")
    if not web.public_url:
        return []
    try:
        web.resolved_secret()
    except ValueError as exc:
        return [Problem(("web", "public_url"), f"customer mail links to the status page, but {exc}")]
    return []


def template_problems(parts: Parts, base_dir: Path) -> list[Problem]:
    templates_dir = parts.section("templates_dir")
    tdir = Path(templates_dir) if Path(templates_dir).is_absolute() else base_dir / templates_dir
    if not tdir.is_dir():
        return [Problem(("templates_dir",), f"directory {tdir} does not exist")]
    # the template's own file and line lead the message: no config line for it
    zones = {b.key: b.timezone for _, b in parts.brands}
    return [Problem((), e) for e in Renderer(tdir, zones=zones).check([b for _, b in parts.brands])]


def staff_problems(parts: Parts, i: int, brand: BrandConfig) -> list[Problem]:
    """Every staff address a brand names is an agent of that brand (or, for supervisor
    and oncall, an address the brand lists as external): else mail to it goes nowhere."""
    agents = {a.email: a for _, a in parts.agents}
    ours = sorted(e for e, a in agents.items() if brand.key in a.brands)
    out = []

    def check(loc: tuple[str | int, ...], address: str, external_ok: bool) -> None:
        agent = agents.get(address)
        if agent is not None and brand.key in agent.brands:
            return
        if external_ok and address in brand.external_staff:
            return
        if agent is not None:
            why = f"{address} is an agent of {', '.join(agent.brands)}, not of {brand.key}"
            fix = f"add {brand.key!r} to that agent's brands"
        else:
            why = f"{address} is not a configured agent"
            fix = f"add it to [[agents]] with brands = [{brand.key!r}]"
        if external_ok:
            fix += ", or list it in external_staff if it is no agent (a pager, a list)"
        hint = did_you_mean(address, ours, cutoff=0.9)  # addresses share their domain
        out.append(Problem(loc, f"{why}, so mail to it would go nowhere{hint}"
                           + (" Otherwise " if hint else "; ") + fix))

    for j, address in enumerate(brand.team):
        check(("brands", i, "team", j), address, False)
    for role in ("supervisor", "oncall"):
        address = getattr(brand, role)
        if address:
            check(("brands", i, role), address, True)
    return out


PLACEHOLDER = re.compile(r"\[\s*(?:à|a) remplacer\s*\]|\[\s*to replace\s*\]", re.IGNORECASE)


def mediator_problems(brand: BrandConfig, i: int) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) about the mediator every final response names: none is an error,
    a value still holding the shipped placeholder ("[À REMPLACER] …") a warning."""
    m = brand.mediator
    if m is None:
        return [Problem(("brands", i), "names no mediator; every final response must name one (ACPR "
                        "recommendation 2022-R-01): add [brands.mediator] with name and website or email")], []
    held = [key for key, value in m.model_dump().items() if PLACEHOLDER.search(value)]
    if not held:
        return [], []
    return [], [Problem(("brands", i, "mediator"), f"{', '.join(held)} still hold a placeholder "
                        f"(\"[À REMPLACER] …\"): name the mediator of {brand.name} before customers "
                        "read it in final responses")]


def secret_problems(parts: Parts, base_dir: Path) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings): no token secret is an error (there is no built-in key, and the
    commands that sign tokens refuse to start); a secret file every user can read, or a
    mailbox password that cannot be read, is a warning."""
    errors, warnings = [], []
    sec = parts.section("security")
    if sec.secret_file and not Path(sec.secret_file).is_absolute():  # when the file did not validate whole
        sec = SecurityConfig.model_validate({**sec.model_dump(), "secret_file": str(base_dir / sec.secret_file)})
    try:
        sec.resolved_secret()
    except MissingSecret as exc:
        errors.append(Problem(("security",), str(exc)))

    else:
        warnings += _readable_secret_file(sec)
    for i, im in parts.imap:
        try:
            im.password()
        except ValueError as exc:
            warnings.append(Problem(("imap", i), str(exc)))
    return errors, warnings


def _readable_secret_file(sec: SecurityConfig) -> list[Problem]:
    """A secret file that every user can read is no secret (when it is the one in use)."""
    if sec.secret or not sec.secret_file or (sec.secret_env and os.environ.get(sec.secret_env)):
        return []
    try:
        mode = os.stat(sec.secret_file).st_mode
    except OSError:
        return []
    if not mode & 0o004:
        return []
    return [Problem(("security", "secret_file"), f"{sec.secret_file} is readable by every user; "
                    f"chmod o-r it (0600, or 0640 with group mailbot)")]


def sla_warnings(brand: BrandConfig, i: int) -> list[Problem]:
    sla, out = brand.sla, []
    ack_days = (sla.ack_hours or 0) / 24 if sla.ack_hours else (sla.ack_business_hours or 0) / 24
    if ack_days > ACK_MAX_BUSINESS_DAYS:
        loc = ("brands", i, "sla", "ack_hours" if sla.ack_hours else "ack_business_hours")
        out.append(Problem(loc, f"acknowledgement limit {ack_days:g} days exceeds the "
                           f"regulator's {ACK_MAX_BUSINESS_DAYS} business days"))
    for tier, days in sla.tiers.items():
        loc = ("brands", i, "sla", "tiers", tier)
        if days > ANSWER_MAX_BUSINESS_DAYS:
            out.append(Problem(loc, f"{days} business days exceeds the regulator's two months"))
        limit = PAYMENT_MAX_EXCEPTIONAL if tier == "exceptional" else PAYMENT_MAX_DAYS
        if sla.payment_services and days > limit:
            out.append(Problem(loc, f"{days} business days exceeds the payment-services limit of "
                               f"{limit} business days"))
    return out
