"""The admin's configuration: `config.toml`, loaded with tomllib and validated.

Every key has a default or a clear error, and a description: docs/configuration.md
is generated from this schema (`python -m mailbot.ops.configdoc`). `load_config`
raises `ConfigError` listing every problem of the file at once (schema errors and
the checks across keys): each names the line, the key (dotted path), the brand it
belongs to, what is expected and, for a misspelt name, the closest valid one.
The resulting `Config` object is passed explicitly; there is no global.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, time
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from mailbot.pipe import DEFAULT_SOCKET, DEFAULT_SOCKET_MODE, DEFAULT_TIMEOUT


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _d(default: Any, description: str, **constraints: Any) -> Any:
    """A field with its default and its meaning (docs/configuration.md is generated from it)."""
    return Field(default, description=description, **constraints)


class DatabaseConfig(_Strict):
    """Where cases, messages and outgoing mail are kept."""

    url: str = _d("sqlite:///var/mailbot.db", "SQLAlchemy URL: `sqlite:///relative/path.db`, "
                  "`sqlite:////absolute/path.db` or `postgresql+psycopg://user@host:5432/db` "
                  "(the password goes in PGPASSWORD, never in the URL)")
    auto_upgrade: bool = _d(True, "`run` and `ingest` apply pending migrations when they start "
                            "(set false on a PostgreSQL fleet and run `mailbot db upgrade` once)")
    busy_timeout: float = _d(10.0, "seconds a SQLite writer waits for the lock before giving up "
                             "(then SMTP answers 451 and the pipe exits 75)", gt=0)


class SmtpConfig(_Strict):
    """The inbound SMTP (or LMTP) listener of `mailbot run`."""

    enabled: bool = _d(True, "listen at all (false: mail comes only by IMAP or the pipe)")
    host: str = _d("127.0.0.1", "address to listen on")
    port: int = _d(2525, "TCP port (0: any free port, for tests)", ge=0, le=65535)
    max_message_size: int = _d(26_214_400, "bytes; advertised as SIZE, larger mail gets 552", gt=0)
    lmtp: bool = _d(False, "speak LMTP (RFC 2033: one reply per recipient), e.g. behind Postfix")
    tls_cert: str | None = _d(None, "PEM certificate file; setting it enables STARTTLS")
    tls_key: str | None = _d(None, "PEM private key file (default: the certificate file)")
    require_starttls: bool = _d(False, "refuse mail sent without STARTTLS (needs tls_cert)")
    max_sessions: int = _d(200, "SMTP sessions at once; one more is answered 421 and closed (each holds a "
                           "file descriptor: keep it well under the process's limit, LimitNOFILE)", ge=1)
    max_data_sessions: int = _d(4, "mails received at once (DATA to the reply): each holds up to a few times "
                                   "max_message_size in memory until it is recorded; a session over the cap waits "
                                   "for its turn (data_wait), then hears 451 4.3.2 and its MTA retries", ge=1)
    data_wait: float = _d(90.0, "seconds a DATA over max_data_sessions waits for its turn before 451 (under "
                                "idle_timeout, and under the 2 minutes an SMTP client waits for the 354)", ge=0)
    idle_timeout: float = _d(120.0, "seconds a session may wait between commands (the DATA of a mail "
                             "included) before it is closed", gt=0)


class PipeConfig(_Strict):
    """`mailbot ingest` (an MTA's pipe) and the running daemon (mailbot.pipe)."""

    socket: str = _d(DEFAULT_SOCKET, "unix socket where `mailbot run` takes mail from `mailbot ingest` "
                     "(LMTP), so the pipe hands each mail to the daemon instead of starting mailbot; "
                     "relative to the config file; \"\": none, the pipe always ingests in process")
    socket_mode: int = _d(DEFAULT_SOCKET_MODE, "permissions of the socket file, written in octal (0o600: only the "
                          "daemon's user may hand over mail; 0o660 for its group)", ge=0, le=0o777)
    timeout: float = _d(DEFAULT_TIMEOUT, "seconds `mailbot ingest` waits for the daemon's "
                        "354 (its turn), then for its answer to the mail, before it ingests in process", gt=0)
    max_data_sessions: int = _d(4, "mails the daemon receives at once from the pipe (DATA to the reply), "
                                   "apart from [smtp]'s: one `mailbot ingest` over the cap waits for its turn "
                                   "(data_wait), then exits 75 and its MTA retries", ge=1)
    data_wait: float = _d(30.0, "seconds a `mailbot ingest` over max_data_sessions waits for its turn before "
                                "exit 75 (under timeout, else it would ingest in process instead)", ge=0)
    max_sessions: int = _d(50, "sessions the daemon holds open on the socket at once (one per `mailbot ingest` "
                           "running); one more is answered 421 and closed, and that `mailbot ingest` exits 75 "
                           "(its MTA retries): idle connections cannot take the daemon's file descriptors", ge=1)
    idle_timeout: float = _d(60.0, "seconds a session on the socket may wait between commands (the DATA of a "
                             "mail, its turn included) before it is closed (over data_wait)", gt=0)


class ImapConfig(_Strict):
    """A mailbox polled over IMAP (zero or more `[[imap]]` tables)."""

    host: str = _d("127.0.0.1", "IMAP server")
    port: int = _d(993, "IMAP port (993 with tls, 143 with starttls)", ge=1, le=65535)
    tls: bool = _d(True, "implicit TLS (IMAPS)")
    starttls: bool = _d(False, "STARTTLS on a plain connection (with tls = false)")
    verify_tls: bool = _d(True, "verify the server's certificate and host name")
    ca_file: str | None = _d(None, "CA bundle to verify the server with (a private CA)")
    username: str = Field(description="login, usually the mailbox's address")
    password_env: str | None = _d(None, "environment variable holding the password")
    password_file: str | None = _d(None, "file holding the password (one of password_env, "
                                   "password_file is required; never inline)")
    folder: str = _d("INBOX", "folder to fetch from")
    processed_folder: str = _d("Processed", "folder a mail is moved to once recorded "
                               "(created if missing; must differ from folder)")
    quarantine_folder: str = _d("Quarantine", "folder for mail kept in quarantine")
    poll_interval: float = _d(60.0, "seconds between polls when the server has no IDLE", gt=0)
    idle: bool = _d(True, "use IDLE when the server offers it (new mail at once)")
    batch_size: int = _d(100, "mails per fetch and commit batch (a pass starts with 25, then 50)",
                         ge=1, le=10_000)
    batch_bytes: int = _d(32_000_000, "at most this much mail (RFC822.SIZE) per batch "
                          "(a bigger mail goes alone)", ge=1)
    brand: str | None = _d(None, "brand key of this mailbox (default: the brand owning username)")

    @model_validator(mode="after")
    def _one_password_source(self) -> ImapConfig:
        if not self.password_env and not self.password_file:
            raise ValueError("set password_env or password_file (the password is never inline)")
        return self

    @property
    def account_key(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"

    def password(self) -> str:
        return read_secret(self.password_env, self.password_file)


class LettersConfig(_Strict):
    """Letters to post (`[letters]`): customers with no email, or who ask for paper."""

    path: str = _d("var/letters", "directory the PDF of each letter is written to, to print")


class OutboundConfig(_Strict):
    """How outgoing mail leaves: a real SMTP relay, or files in a Maildir (demos, tests)."""

    transport: Literal["maildir", "smtp"] = _d("maildir", "`smtp` for a real relay, `maildir` "
                                               "to write each mail as a file under path")
    path: str = _d("var/sent", "maildir transport: the Maildir written to")
    host: str = _d("127.0.0.1", "smtp transport: the relay's host")
    port: int = _d(25, "smtp transport: the relay's port", ge=1, le=65535)
    tls: bool = _d(False, "smtp transport: implicit TLS (port 465)")
    starttls: bool = _d(False, "smtp transport: STARTTLS before sending")
    verify_tls: bool = _d(True, "smtp transport: verify the relay's certificate and host name")
    username: str | None = _d(None, "smtp transport: login (none: no AUTH)")
    password_env: str | None = _d(None, "environment variable holding the relay password")
    password_file: str | None = _d(None, "file holding the relay password")
    timeout: float = _d(30.0, "seconds before a silent relay counts as a failed attempt", gt=0)
    max_attempts: int = _d(8, "attempts before a mail is marked failed (a `mail_failed` event "
                           "goes on its case)", ge=1)
    backoff_seconds: float = _d(30.0, "first retry delay, doubled each time (±20 % jitter)", ge=0)
    backoff_max_seconds: float = _d(3600.0, "longest retry delay", ge=0)
    batch_size: int = _d(200, "not used (outgoing mail is claimed 50 rows at a time); "
                         "accepted so older files still load", ge=1)

    def password(self) -> str | None:
        if not self.password_env and not self.password_file:
            return None
        return read_secret(self.password_env, self.password_file)


class LimitsConfig(_Strict):
    """Loop and flood protection, and what is kept of attachments."""

    ack_limit: int = _d(5, "acknowledgements per sender per hour (later mails are recorded, "
                        "not acknowledged)", ge=0)
    auto_per_case: int = _d(20, "automatic mails per case, all kinds together", ge=0)
    first_contact_acks: int = _d(100, "acknowledgements per hour, all brands together, to addresses we never "
                                 "wrote to before (beyond it a new sender's case is opened without one, the "
                                 "staff's notification says why, and the supervisor gets one alert an hour)",
                                 ge=0)
    max_attachment_size: int = _d(26_214_400, "bytes per attachment kept (a larger one is listed "
                                  "as dropped)", gt=0)
    blocked_extensions: list[str] = _d(
        [".exe", ".bat", ".cmd", ".com", ".scr", ".js", ".vbs", ".ps1", ".msi", ".jar"],
        "attachment file name endings that are not kept (listed as dropped)")


class IngestConfig(_Strict):
    """The write path's helpers."""

    workers: int = _d(-1, "processes that parse, classify and extract batches (IMAP, import) "
                      "while the previous batch is written; -1: one per usable CPU beyond the "
                      "first (at most 4), 0: none", ge=-1, le=64)


MIN_SECRET_LENGTH = 16


class MissingSecret(ValueError):
    """No usable token secret; the message says which keys to set."""


class SecurityConfig(_Strict):
    """The secret that signs agent tokens (there is no built-in one), and who counts as an agent."""

    secret_env: str | None = _d("MAILBOT_SECRET", "environment variable holding the token "
                                "secret (HMAC key of agent tokens; at least 16 characters)")
    secret_file: str | None = _d(None, "file holding the token secret, read when secret_env is unset "
                                 "(relative to the config file)")
    secret: str | None = _d(None, "the secret inline: only for tests")
    require_authenticated_agents: bool = _d(False, "agent mail must show DKIM, SPF or DMARC pass "
                                            "for exactly the From domain in the topmost "
                                            "Authentication-Results of trusted_authserv_id")
    trusted_authserv_id: str | None = _d(None, "authserv-id of your MTA's Authentication-Results "
                                         "(required with require_authenticated_agents; only the "
                                         "topmost header of this id is read); set, a customer's reply "
                                         "matched only by the case reference in its subject must pass too")
    agent_token_days: int = _d(90, "days an agent reply token stays valid", ge=1)

    @model_validator(mode="after")
    def _authserv_id_with_authentication(self) -> SecurityConfig:
        if self.require_authenticated_agents and not (self.trusted_authserv_id or "").strip():
            raise ValueError("require_authenticated_agents needs trusted_authserv_id (the authserv-id "
                             "your MTA writes in Authentication-Results): without it anyone can write "
                             "a passing header")
        return self

    def resolved_secret(self) -> str:
        """The HMAC key of the agent tokens. There is no built-in key: without one (or
        with one shorter than MIN_SECRET_LENGTH) this raises `MissingSecret`, and every
        command that signs or checks a token refuses to start (mailbot.cli.main)."""
        return self.secret_value

    @cached_property
    def secret_value(self) -> str:
        """Read once per loaded config (a reload reads it again)."""
        where = " or ".join(w for w in (
            f"the environment variable {self.secret_env} (security.secret_env)" if self.secret_env else "",
            f"the file {self.secret_file} (security.secret_file)" if self.secret_file else "") if w)
        if self.secret:
            value = self.secret
        elif self.secret_env and os.environ.get(self.secret_env):
            value = os.environ[self.secret_env]
        elif self.secret_file:
            try:
                value = Path(self.secret_file).read_text().strip()
            except OSError as exc:
                raise MissingSecret(f"cannot read the token secret from {where}: {exc.strerror}; "
                                    f"create it, e.g. `openssl rand -hex 32 > {self.secret_file}`, "
                                    "readable by mailbot only") from None
        else:
            unset = f"the environment variable {self.secret_env} (security.secret_env) is not set" \
                if self.secret_env else "security.secret_env is not set"
            raise MissingSecret(f"no token secret: {unset} and there is no security.secret_file; set one "
                                "of them (e.g. to the output of `openssl rand -hex 32`)")
        if not value:
            raise MissingSecret(f"no token secret: {where} is empty")
        if len(value) < MIN_SECRET_LENGTH:
            raise MissingSecret(f"the token secret from {where} is shorter than {MIN_SECRET_LENGTH} "
                                "characters; use e.g. `openssl rand -hex 32`")
        return value


class Category(_Strict):
    """A complaint category of a brand (`[[brands.categories]]`)."""

    key: str = Field(description="short name, used by `#category KEY` and in the register")
    label: str = Field(description="what the customer and agents read")
    labels: dict[str, str] = _d({}, "the label in the brand's other languages, e.g. "
                                "{ en = \"Late or failed payment\" } (default: label)")
    ask: list[Literal["coordonnees", "date_faits", "type_operation", "montant", "references",
                      "pieces_jointes", "etapes"]] | None = _d(None, "what the acknowledgement asks for when it is missing, among "
                               "coordonnees, date_faits, type_operation, montant, references, "
                               "pieces_jointes, etapes (default: all but etapes; a login problem "
                               "needs no amount)")
    keywords: list[str] = _d([], "words that put a new case in this category (first match wins)")
    tier: str | None = _d(None, "SLA tier of cases in this category (one of the brand's sla.tiers; "
                          "default: sla.default_tier)")


class MediatorConfig(_Strict):
    """The independent mediator a customer may turn to (named in every final response)."""

    name: str = Field(min_length=1, description="the mediator's name, as customers read it")
    postal_address: str = _d("", "where customers write to the mediator")
    website: str = _d("", "the mediator's website (website or email: one at least)")
    email: str = _d("", "the mediator's address (website or email: one at least)")

    @model_validator(mode="after")
    def _reachable(self) -> MediatorConfig:
        if not (self.website or self.email):
            raise ValueError("give the mediator's website or email (customers must be able to reach it)")
        return self


class SlaConfig(_Strict):
    """A brand's deadlines (`[brands.sla]`)."""

    ack_business_hours: float | None = _d(24, "acknowledgement deadline in business hours", gt=0)
    ack_hours: float | None = _d(None, "acknowledgement deadline in calendar hours (overrides "
                                 "ack_business_hours)", gt=0)
    tiers: dict[str, int] = _d({"simple": 5, "complex": 15, "exceptional": 30},
                               "answer deadline in business days, per tier name")
    default_tier: str = _d("simple", "tier of a new case (one of tiers)")
    reminders: list[float] = _d([0.5, 0.8], "reminders to the agent or team at these fractions "
                                "of the time to the deadline (each between 0 and 1)")
    escalate_at_breach: bool = _d(True, "tell the supervisor when the deadline passes")
    autoclose_days: int = _d(30, "days of silence after the final response before a case "
                             "closes", ge=0)
    reexamination_days: int = _d(15, "business days to answer a re-examination", ge=1)
    payment_services: bool = _d(False, "the brand offers payment services: check-config warns "
                                "beyond the regulator's 15 (35) business days")
    # Legal caps on the answer date (mailbot.cases.rounds): a change of the promised date
    # past them is refused.
    cap_months: int = _d(2, "any complaint is answered at most this many months after its "
                         "receipt (ACPR recommendation 2022-R-01)", ge=1, le=12)
    payment_days: int = _d(15, "payment services: business days to answer (PSD2, CMF "
                           "L.133-45); beyond them only with a notice giving the reasons", ge=1)
    payment_days_max: int = _d(35, "payment services: business days to answer at most, with "
                               "the reasons given", ge=1)
    reasons_required: bool = _d(False, "every change of the promised date tells the customer "
                                "its reason (a tier change too, not only an extension)")
    business_hours: str = _d("09:00-18:00", "opening hours (local, HH:MM-HH:MM) of business days: "
                             "reminders, escalations and holding replies are sent within them, and "
                             "an urgent case's first-response deadline counts them")
    holding_reply: bool = _d(True, "when a deadline passes unanswered, the customer gets a holding "
                             "reply (as well as the supervisor's escalation)")
    urgent_response_hours: float = _d(4, "urgent cases (fraud…): an agent acts within this many "
                                      "opening hours, else the supervisor is alerted", gt=0)
    urgent_realert_minutes: float = _d(30, "urgent cases: the on-call alert is repeated this often "
                                       "while no agent has acted", gt=0)
    urgent_realerts: int = _d(2, "urgent cases: how many times the on-call alert is repeated", ge=0)

    @property
    def opening_hours(self) -> tuple[time, time]:
        start, _, end = self.business_hours.partition("-")
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())

    @field_validator("business_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        start, sep, end = v.partition("-")
        try:
            opens, closes = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
        except ValueError:
            opens = closes = None
        if not sep or opens is None or closes is None or not opens < closes:
            raise ValueError(f"{v!r} is not opening hours like 09:00-18:00")
        return v

    @model_validator(mode="after")
    def _tiers_known(self) -> SlaConfig:
        for p in self.reminders:
            if not 0 < p < 1:
                raise ValueError(f"reminders must be fractions between 0 and 1, got {p}")
        return self


class DigestConfig(_Strict):
    """The daily digest to a brand's staff (`[brands.digest]`, mailbot.cases.digest)."""

    enabled: bool = _d(True, "each agent and supervisor of the brand gets one mail a business day "
                       "listing their cases: overdue, due today, waiting on the customer, assigned to them")
    at: str = _d("08:30", "local time (HH:MM, the brand's time zone) from which the day's digest is sent")
    case_reminders: Literal["urgent", "all"] = _d(
        "urgent", "per-case reminders (sla.reminders): for urgent cases only, the others being in the "
        "digest, or for every case (with the digest off, every case gets them)")
    max_lines: int = _d(30, "cases listed in each section at most (the rest are counted, with the "
                        "command that lists them)", ge=1, le=500)

    @property
    def time(self) -> time:
        return time.fromisoformat(self.at)

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        try:
            time.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a time like 08:30") from None
        return v


_BRAND_KEY = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PREFIX = re.compile(r"^[A-Z]{1,6}$")


class BrandConfig(_Strict):
    """A brand (`[[brands]]`): its addresses, language, calendar, staff and procedure."""

    key: str = Field(description="identifier: lower-case letters, digits and hyphens "
                     "(`templates/<key>/`, `--brand KEY`)")
    name: str = Field(description="the name customers read")
    prefix: str = Field(description="case reference prefix, 1 to 6 capital letters "
                        "(KP gives KP-2026-000123)")
    addresses: list[str] = Field(min_length=1, description="the brand's addresses, e.g. "
                                 "support@example.com (their +token forms are accepted too)")
    language: str = _d("fr", "language of mail when the customer's is not served")
    languages: list[str] = _d(["fr", "en"], "languages the brand answers in "
                              "(`templates/<brand>/<language>/`)")
    timezone: str = _d("Europe/Paris", "IANA time zone of the brand's business days and of every time its mails and pages show (named after it: 'à 10:00 (heure de Paris)')")
    holidays_country: str = _d("FR", "country whose public holidays are not business days "
                               "(ISO 3166 code)")
    holidays_subdiv: str | None = _d(None, "subdivision adding its own holidays (e.g. MF: "
                                     "Saint-Martin)")
    closed_days: list[date] = _d([], "extra days that are not business days (YYYY-MM-DD)")
    categories: list[Category] = _d([], "complaint categories (`[[brands.categories]]`)")
    default_category: str = _d("other", "category of a case no keyword matches (one of the "
                               "category keys)")
    urgent_keywords: list[str] = _d([], "words that make a case urgent (fraud…): the on-call "
                                    "address is told at once")
    team: list[str] = _d([], "agents notified of new mail on unassigned cases; the first also "
                         "gets their reminders (each a configured agent of this brand)")
    supervisor: str | None = _d(None, "gets escalations at a deadline breach and security alerts "
                                "(a configured agent of this brand, or listed in external_staff)")
    oncall: str | None = _d(None, "told at once of urgent cases (a configured agent of this "
                            "brand, or listed in external_staff)")
    external_staff: list[str] = _d([], "staff addresses that are not agents (a pager, a "
                                   "distribution list): allowed as supervisor or oncall")
    mediator: MediatorConfig | None = _d(None, "the independent mediator every final response "
                                         "names (`[brands.mediator]`; check-config refuses a brand "
                                         "without one)")
    postal_address: str = _d("", "the brand's postal address, given in mail")
    sla: SlaConfig = _d(SlaConfig(), "deadlines (`[brands.sla]`)")
    digest: DigestConfig = _d(DigestConfig(), "the daily digest to the brand's staff (`[brands.digest]`)")
    ask_steps_taken: bool = _d(False, "the acknowledgement also asks for the steps already taken "
                               "to solve the problem, when the mail gives none (Divikeys §2.1)")
    final_sections: list[Literal["summary", "explanation", "steps", "corrective_measures",
                                 "solution"]] = _d(
        ["summary", "explanation", "steps", "corrective_measures", "solution"],
        "sections an agent's final response must carry")
    retention_years: int = _d(5, "years after closing before personal data is erased", ge=1)
    staff_attachments_max: int = _d(
        10_000_000, "bytes of the customer's files attached to a staff notification, all together (the "
        "rest are listed, with the command that gives them: `mailbot cases attachment`); 0: list only", ge=0)
    close_without_final: Literal["supervisor", "agents"] = _d(
        "supervisor", "who may #close a case before its final response (a reason is required and "
        "the customer is told): supervisors only, or every agent of the brand")

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not _BRAND_KEY.match(v):
            raise ValueError(f"{v!r} is not a brand key: use lower-case letters, digits and "
                             "hyphens (e.g. 'kalra-plus')")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v):
            raise ValueError(f"{v!r} is not a reference prefix: use 1 to 6 capital letters "
                             "(e.g. 'KP')")
        return v

    @field_validator("addresses", "external_staff")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        out = []
        for a in v:
            if "@" not in a or " " in a or "+" in a.split("@")[0]:
                raise ValueError(f"{a!r} is not a plain address like support@example.com")
            out.append(a.lower())
        return out

    @field_validator("supervisor", "oncall")
    @classmethod
    def _staff(cls, v: str | None) -> str | None:
        if v is not None and ("@" not in v or " " in v):
            raise ValueError(f"{v!r} is not an address like supervisor@example.com")
        return v.lower() if v else v

    @field_validator("team")
    @classmethod
    def _team(cls, v: list[str]) -> list[str]:
        return [a.lower() for a in v]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, available_timezones

        try:
            ZoneInfo(v)
        except Exception as exc:
            hint = did_you_mean(v, available_timezones())
            raise ValueError(f"unknown time zone {v!r}" + (hint or ": expected an IANA name such "
                             "as 'Europe/Paris' or 'America/Marigot'")) from exc
        return v

    def reminds_per_case(self, priority: str) -> bool:
        """Whether a case of this priority gets per-case reminders (sla.reminders): urgent
        ones always; the others unless the daily digest lists them."""
        return priority == "urgent" or not self.digest.enabled or self.digest.case_reminders == "all"

    def category_tier(self, category: str | None) -> str:
        for c in self.categories:
            if c.key == category and c.tier:
                return c.tier
        return self.sla.default_tier


class AgentConfig(_Strict):
    """A member of staff who answers cases by mail (`[[agents]]`)."""

    email: str = Field(description="the agent's address (their replies must come from it)")
    name: str = _d("", "display name")
    brands: list[str] = Field(min_length=1, description="keys of the brands the agent works for")
    role: Literal["agent", "supervisor", "admin"] = _d("agent", "supervisors and admins may also "
                                                       "close a case before its final response")
    language: str | None = _d(None, "language of the staff mail this person gets (default: the "
                              "brand's)")

    @property
    def supervises(self) -> bool:
        """Supervisors and admins may do what only they may (close an unanswered case)."""
        return self.role in ("supervisor", "admin")

    @field_validator("email")
    @classmethod
    def _lower(cls, v: str) -> str:
        if "@" not in v:
            raise ValueError(f"{v!r} is not an address")
        return v.lower()


class SchedulerConfig(_Strict):
    """How often `mailbot run` runs each job (a `tick` runs them all once)."""

    sla_interval: float = _d(60.0, "seconds between SLA sweeps (reminders, escalations), daily digest checks, rendering of letters to post and alert digests", gt=0)
    outbox_interval: float = _d(5.0, "seconds between outbox dispatches", gt=0)
    reconcile_interval: float = _d(3600.0, "seconds between IMAP reconciliations", gt=0)
    housekeeping_interval: float = _d(3600.0, "seconds between auto-close and retention runs",
                                      gt=0)


class HttpConfig(_Strict):
    """The health and metrics listener of `mailbot run` (`/healthz`, `/metrics`)."""

    enabled: bool = _d(False, "serve /healthz and /metrics")
    host: str = _d("127.0.0.1", "address to listen on")
    port: int = _d(9925, "TCP port (0: any free port)", ge=0, le=65535)
    max_connections: int = _d(64, "connections at once; one more closes the oldest that has not sent its whole "
                                  "request (else it hears 503)", ge=1)
    timeout: float = _d(5.0, "seconds a client has to send its whole request, and to read the answer", gt=0)
    metrics_cache: float = _d(5.0, "seconds a /metrics page is served again before the database is read anew "
                                   "(0: every scrape reads it)", ge=0)


class ApiClient(_Strict):
    """A brand's own site or customer area, filing complaints through the intake API."""

    brand: str = Field(description="the brand whose complaints this key files and reads (one brand a key)")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="a short name for the client, "
                      "recorded as the source of what it files (`web:api:<brand>/<name>`)")
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the client's key, in hex "
                            "(`printf %s \"$KEY\" | sha256sum`); the key itself is never in the file")


class WebConfig(_Strict):
    """`mailbot web`: the complaint form, the status page, the intake API, the staff console."""

    host: str = _d("127.0.0.1", "address to listen on (`mailbot web --host` overrides it); keep it "
                   "on loopback behind a TLS reverse proxy")
    port: int = _d(8080, "TCP port (`mailbot web --port` overrides it)", ge=0, le=65535)
    public_url: str | None = _d(None, "the address customers and staff reach, e.g. "
                                "`https://reclamations.example.com`: links in mail point there (every "
                                "customer mail then carries its status link); https makes cookies `Secure`")
    secret_env: str | None = _d("MAILBOT_WEB_SECRET", "environment variable holding the key of cookies, "
                                "CSRF tokens, sign-in and status links (at least 16 characters; no default: "
                                "`mailbot web` refuses to start without it)")
    secret_file: str | None = _d(None, "file holding that key (instead of secret_env)")
    secret: str | None = _d(None, "the key inline: only for demos and tests")
    signin_minutes: int = _d(15, "life of a staff sign-in link, in minutes (each link works once)", ge=1, le=60)
    session_hours: float = _d(12, "life of a staff session, in hours", gt=0, le=24 * 30)
    max_request_size: int = _d(15_728_640, "bytes of one form post, files included (refused with 413 "
                               "before it is read whole)", gt=0)
    max_files: int = _d(5, "files per form post", ge=0, le=50)
    allowed_extensions: list[str] = _d(
        [".pdf", ".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".txt", ".csv", ".doc", ".docx", ".odt",
         ".xls", ".xlsx", ".ods", ".eml"], "file name endings the form and the API accept")
    limit_per_address: int = _d(5, "complaints and uploads per customer address per hour (then 429)", ge=1)
    limit_per_ip: int = _d(20, "form posts per client IP per hour (then 429)", ge=1)
    trusted_proxies: list[str] = _d(["127.0.0.1", "::1"], "peers whose `X-Forwarded-For` and "
                                    "`X-Forwarded-Proto` are believed (the reverse proxy)")
    api_clients: list[ApiClient] = _d([], "`[[web.api_clients]]`: who may use the intake API")

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", v):
            raise ValueError(f"{v!r} is not an http(s) URL like https://complaints.example.com")
        return v.rstrip("/") if v else v

    @property
    def over_tls(self) -> bool:
        return bool(self.public_url and self.public_url.startswith("https://"))

    def resolved_secret(self) -> str:
        """The key of cookies, CSRF tokens, sign-in and status links; no default."""
        if self.secret:
            return self.secret
        try:
            value = read_secret(self.secret_env, self.secret_file)
        except ValueError:
            value = ""
        if len(value) < 16:
            raise ValueError(f"the web secret is not set or too short (at least 16 characters): set the "
                             f"environment variable {self.secret_env} or web.secret_file")
        return value


class Config(_Strict):
    """The whole file."""

    database: DatabaseConfig = _d(DatabaseConfig(), "`[database]`")
    smtp: SmtpConfig = _d(SmtpConfig(), "`[smtp]`")
    pipe: PipeConfig = _d(PipeConfig(), "`[pipe]`")
    imap: list[ImapConfig] = _d([], "`[[imap]]`")
    outbound: OutboundConfig = _d(OutboundConfig(), "`[outbound]`")
    letters: LettersConfig = _d(LettersConfig(), "`[letters]`")
    limits: LimitsConfig = _d(LimitsConfig(), "`[limits]`")
    ingest: IngestConfig = _d(IngestConfig(), "`[ingest]`")
    security: SecurityConfig = _d(SecurityConfig(), "`[security]`")
    scheduler: SchedulerConfig = _d(SchedulerConfig(), "`[scheduler]`")
    http: HttpConfig = _d(HttpConfig(), "`[http]`")
    web: WebConfig = _d(WebConfig(), "`[web]`")
    templates_dir: str = _d("templates", "directory of the mail templates, "
                                 "`<brand>/<language>/<kind>.txt` and `.html`")
    brands: list[BrandConfig] = Field(min_length=1, description="`[[brands]]`, at least one")
    agents: list[AgentConfig] = _d([], "`[[agents]]`")
    source_path: str = Field("<memory>", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _secret_file_beside_config(cls, data: object) -> object:
        """A relative `security.secret_file` is relative to the config file, like every path."""
        sec = data.get("security") if isinstance(data, dict) else None
        source = data.get("source_path", "<memory>") if isinstance(data, dict) else "<memory>"
        if isinstance(sec, dict) and isinstance(sec.get("secret_file"), str) and source != "<memory>":
            path = Path(sec["secret_file"])
            if not path.is_absolute():
                data = {**data, "security": {**sec, "secret_file": str(Path(source).resolve().parent / path)}}
        return data

    # -- lookups used across the code -------------------------------------
    def brand(self, key: str) -> BrandConfig:
        for b in self.brands:
            if b.key == key:
                return b
        raise KeyError(key)

    def zones(self) -> dict[str, str]:
        """Each brand's time zone, by brand key (the times its mails and pages show)."""
        return {b.key: b.timezone for b in self.brands}

    def brand_for_address(self, address: str) -> BrandConfig | None:
        """The brand owning `address` (plus-addressing allowed), or None."""
        local, _, domain = address.lower().rpartition("@")
        base = local.split("+", 1)[0] + "@" + domain
        for b in self.brands:
            if base in b.addresses:
                return b
        return None

    @cached_property
    def own_addresses(self) -> frozenset[str]:
        """Every brand address (computed once per loaded config)."""
        return frozenset(a for b in self.brands for a in b.addresses)

    def agent(self, email: str) -> AgentConfig | None:
        email = email.lower()
        for a in self.agents:
            if a.email == email:
                return a
        return None

    def staff(self, email: str | None, brand: str) -> AgentConfig | None:
        """The configured agent at `email` if they work for `brand` now (staff mail goes
        only to them, and only their replies are taken as staff replies), else None."""
        agent = self.agent(email) if email else None
        return agent if agent is not None and brand in agent.brands else None

    def staff_of(self, brand: str) -> list[AgentConfig]:
        """Every configured agent (supervisors included) of `brand`, in config order."""
        return [a for a in self.agents if brand in a.brands]

    def receives_staff_mail(self, email: str | None, brand: str) -> bool:
        """Staff mail about `brand`'s cases may go to `email`: one of its agents now, or one of
        its `external_staff` (a pager, a list: they get it, but only agents act by replying)."""
        if not email:
            return False
        return self.staff(email, brand) is not None or email.lower() in self.brand(brand).external_staff

    def base_dir(self) -> Path:
        return Path(self.source_path).resolve().parent if self.source_path != "<memory>" else Path.cwd()

    def resolve_path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.base_dir() / path

    def database_url(self) -> str:
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve_path(url[len(prefix):]))
        return url


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file: the key (a path such as ("brands", 0, "timezone")),
    what is wrong and expected, and once located, the line and the item it belongs to."""

    loc: tuple[str | int, ...]
    message: str
    line: int | None = None
    item: str = ""  # "brand kalra-plus", "agent a@b.c", "mailbox u@h" (from the file's data)

    @property
    def key(self) -> str:
        return dotted(self.loc)

    def __str__(self) -> str:
        what = f"key {self.key}" + (f" ({self.item})" if self.item else "") + ": " if self.loc else ""
        return what + self.message

    def render(self, path: str, label: str = "") -> str:
        """`path:line: [label: ]key …: message`, as compilers write it (editors jump to the line)."""
        head = f"{path}:{self.line}: " if self.line else f"{path}: "
        return head + (f"{label}: " if label else "") + str(self)


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists each one (all of them)."""

    def __init__(self, path: str, problems: Sequence[Problem | str]):
        self.path = path
        self.problems = [p if isinstance(p, Problem) else Problem((), p) for p in problems]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.render(self.path) for p in self.problems]


def read_secret(env: str | None, file: str | None) -> str:
    if env and os.environ.get(env):
        return os.environ[env]
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read password_file {file}: {exc.strerror}") from exc
    raise ValueError(f"secret not found (env {env!r} unset, no file)")


def dotted(loc: Sequence[str | int]) -> str:
    """("brands", 0, "sla", "tiers") -> "brands[0].sla.tiers"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """'; did you mean 'x'?' for the closest choice (difflib's ratio at least `cutoff`), or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


# -- validation: every problem of a file at once --------------------------------------------

@dataclass
class Parts:
    """What validated of a config file, item by item, with each item's index in the file.

    When the whole file validates, `config` is it and the lists hold all its items;
    otherwise the lists hold the items that validate on their own, so that the checks
    across keys (and `check-config`'s own) still run and report in the same run."""

    config: Config | None
    brands: list[tuple[int, BrandConfig]]
    agents: list[tuple[int, AgentConfig]]
    imap: list[tuple[int, ImapConfig]]
    brand_keys: set[str]  # every brand key written in the file, valid brand or not
    sections: dict[str, Any]  # the single tables ([smtp], [security]…) that validate, by name

    def section(self, name: str) -> Any:
        return self.sections.get(name) or Config.model_fields[name].default


_ITEMS = {"brands": BrandConfig, "agents": AgentConfig, "imap": ImapConfig}


def examine(data: dict[str, Any], path: str = "<memory>") -> tuple[Parts, list[Problem]]:
    """Validate `data` (a parsed config file): what validates, and every problem found,
    schema errors and checks across keys together."""
    problems: list[Problem] = []
    try:
        cfg: Config | None = Config.model_validate({**data, "source_path": path})
    except ValidationError as exc:
        cfg = None
        problems += [_schema_problem(err, data) for err in exc.errors()]
    parts = _parts(cfg, data)
    problems += cross_problems(parts)
    return parts, problems


def _parts(cfg: Config | None, data: dict[str, Any]) -> Parts:
    keys = {b.get("key") for b in _list(data, "brands") if isinstance(b.get("key"), str)}
    if cfg is not None:
        return Parts(cfg, list(enumerate(cfg.brands)), list(enumerate(cfg.agents)), list(enumerate(cfg.imap)),
                     keys, {name: getattr(cfg, name) for name in Config.model_fields})
    items: dict[str, list[tuple[int, Any]]] = {}
    for name, model in _ITEMS.items():
        items[name] = [(i, item) for i, raw in enumerate(_list(data, name))
                       if (item := _lenient(model, raw)) is not None]
    sections: dict[str, Any] = {}
    for name, field in Config.model_fields.items():
        if name in data and name not in _ITEMS and name != "source_path":
            try:
                sections[name] = TypeAdapter(field.annotation).validate_python(data[name])
            except ValidationError:
                pass
    return Parts(None, items["brands"], items["agents"], items["imap"], keys, sections)


def _lenient(model: type[BaseModel], raw: dict[str, Any]) -> Any:
    """`raw` validated as `model`, its invalid keys left at their defaults; None when a
    required key is invalid (its problems are reported by the whole file's validation)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
    if any(model.model_fields[k].is_required() for k in bad if k in model.model_fields):
        return None
    try:
        return model.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:
        return None


def _list(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _schema_problem(err: Any, data: dict[str, Any]) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        known = [k for k in _fields_at(loc[:-1]) if k != "source_path"]
        section = dotted(loc[:-1]) if loc[:-1] else "the top level"
        msg = (f"unknown key {loc[-1]!r} in {section}{did_you_mean(str(loc[-1]), known)}"
               f" (valid keys: {', '.join(known)})")
        return Problem(loc, msg)
    if kind == "missing":
        meaning = _description_at(loc)
        return Problem(loc, "required key is missing" + (f": {meaning}" if meaning else ""))
    msg = err["msg"].removeprefix("Value error, ")
    shown = not isinstance(err.get("input"), dict | list) and repr(err.get("input")) not in msg
    return Problem(loc, msg + (f" (got {err['input']!r})" if shown else ""))


def _model_at(loc: Sequence[str | int]) -> Any:
    """The pydantic model the key path `loc` leads to, or None."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> Any:
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model is not None else []


def _description_at(loc: Sequence[str | int]) -> str:
    model = _model_at([p for p in loc[:-1]])
    field = model.model_fields.get(loc[-1]) if model is not None and isinstance(loc[-1], str) else None
    return (field.description or "") if field is not None else ""


def parse_config(data: dict[str, Any], path: str = "<memory>", text: str | None = None) -> Config:
    """The validated config of `data`; ConfigError with every problem (located in `text`
    when it is given) otherwise."""
    parts, problems = examine(data, path)
    if problems or parts.config is None:
        raise ConfigError(path, locate(problems, data, text))
    return parts.config


def locate(problems: Sequence[Problem], data: dict[str, Any], text: str | None) -> list[Problem]:
    """The problems with the line of their key in `text` and the item (brand, agent,
    mailbox) they belong to."""
    from mailbot.toml_lines import KeyLines

    lines = KeyLines(text) if text is not None else None
    return [replace(p, line=p.line or (lines.line(p.loc) if lines else None), item=p.item or _item(p.loc, data))
            for p in problems]


_ITEM_LABEL = {"brands": ("brand", "key"), "agents": ("agent", "email"), "imap": ("mailbox", "username")}


def _item(loc: Sequence[str | int], data: dict[str, Any]) -> str:
    if len(loc) < 2 or loc[0] not in _ITEM_LABEL or not isinstance(loc[1], int):
        return ""
    what, name_key = _ITEM_LABEL[str(loc[0])]
    items = data.get(str(loc[0]))
    if not isinstance(items, list) or loc[1] >= len(items) or not isinstance(items[loc[1]], dict):
        return ""
    name = items[loc[1]].get(name_key)
    return f"{what} {name}" if isinstance(name, str) and name else ""


def cross_problems(parts: Parts) -> list[Problem]:
    """Checks that involve several keys; each names the key at fault."""
    out: list[Problem] = []
    seen_keys: set[str] = set()
    seen_prefix: dict[str, str] = {}
    seen_addr: dict[str, str] = {}
    known = sorted(parts.brand_keys)
    for i, b in parts.brands:
        if b.key in seen_keys:
            out.append(Problem(("brands", i, "key"),
                               f"{b.key!r} is already used by another brand (keys must be unique)"))
        seen_keys.add(b.key)
        if b.prefix in seen_prefix:
            out.append(Problem(("brands", i, "prefix"),
                               f"{b.prefix!r} is already the prefix of {seen_prefix[b.prefix]}"))
        seen_prefix.setdefault(b.prefix, b.key)
        for a in b.addresses:
            if a in seen_addr:
                out.append(Problem(("brands", i, "addresses"), f"{a} already belongs to {seen_addr[a]} "
                                   "(an address routes to one brand)"))
            seen_addr.setdefault(a, b.key)
        tiers = sorted(b.sla.tiers)
        if b.sla.default_tier not in b.sla.tiers:
            out.append(Problem(("brands", i, "sla", "default_tier"),
                               f"{b.sla.default_tier!r} is not one of brands[{i}].sla.tiers {tiers}"
                               + did_you_mean(b.sla.default_tier, tiers)))
        for j, c in enumerate(b.categories):
            if c.tier and c.tier not in b.sla.tiers:
                out.append(Problem(("brands", i, "categories", j, "tier"),
                                   f"{c.tier!r} is not one of brands[{i}].sla.tiers {tiers}"
                                   + did_you_mean(c.tier, tiers)))
    for i, a in parts.agents:
        for bk in a.brands:
            if bk not in parts.brand_keys:
                out.append(Problem(("agents", i, "brands"),
                                   f"unknown brand {bk!r} (known: {', '.join(known)}){did_you_mean(bk, known)}"))
    for i, im in parts.imap:
        if im.brand and im.brand not in parts.brand_keys:
            out.append(Problem(("imap", i, "brand"), f"unknown brand {im.brand!r} (known: {', '.join(known)})"
                               + did_you_mean(im.brand, known)))
        if im.folder in (im.processed_folder, im.quarantine_folder):
            out.append(Problem(("imap", i, "processed_folder"), f"must differ from folder {im.folder!r} "
                               "(else processed mail would be fetched again)"))
    pipe = parts.section("pipe")
    if pipe.data_wait >= pipe.timeout:
        out.append(Problem(("pipe", "data_wait"), f"must be under pipe.timeout ({pipe.timeout:g} s): a "
                           "`mailbot ingest` still waiting for its turn would give up on the daemon and "
                           "ingest in process, past the cap"))
    if pipe.data_wait >= pipe.idle_timeout:
        out.append(Problem(("pipe", "data_wait"), f"must be under pipe.idle_timeout ({pipe.idle_timeout:g} s): "
                           "the daemon would close a session still waiting for its turn"))
    for i, client in enumerate(parts.section("web").api_clients):
        if client.brand not in parts.brand_keys:
            out.append(Problem(("web", "api_clients", i, "brand"), f"unknown brand {client.brand!r} "
                               f"(known: {', '.join(known)})" + did_you_mean(client.brand, known)))
    return out


def read_config_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The parsed TOML of `path` and its text; ConfigError (with the line) when it is
    unreadable or not TOML."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), [f"not UTF-8 text: {exc}"]) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise ConfigError(str(p), [Problem((), f"not valid TOML: {exc}", int(m.group(1)) if m else None)]) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    data, text = read_config_file(path)
    return parse_config(data, str(path), text)
