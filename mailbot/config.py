"""The admin's configuration: `config.toml`, loaded with tomllib and validated.

Every key has a default or a clear error. `load_config` raises `ConfigError`
whose `problems` name the file, the key (dotted path) and what is expected.
The resulting `Config` object is passed explicitly; there is no global.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    url: str = Field("sqlite:///var/mailbot.db", description="SQLAlchemy URL")
    auto_upgrade: bool = True
    busy_timeout: float = Field(10.0, gt=0, description="seconds a SQLite writer waits for the lock")


class SmtpConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=0, le=65535)
    max_message_size: int = Field(26_214_400, gt=0)
    lmtp: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    require_starttls: bool = False


class ImapConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(993, ge=1, le=65535)
    tls: bool = True
    starttls: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    username: str
    password_env: str | None = None
    password_file: str | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    poll_interval: float = Field(60.0, gt=0)
    idle: bool = True
    batch_size: int = Field(100, ge=1, le=10_000)
    batch_bytes: int = Field(32_000_000, ge=1)  # RFC822.SIZE per batch (a bigger mail goes alone)
    brand: str | None = None

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


class OutboundConfig(_Strict):
    transport: Literal["maildir", "smtp"] = "maildir"
    path: str = "var/sent"
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    tls: bool = False
    starttls: bool = False
    verify_tls: bool = True
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    timeout: float = Field(30.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff_seconds: float = Field(30.0, ge=0)
    backoff_max_seconds: float = Field(3600.0, ge=0)
    batch_size: int = Field(200, ge=1)

    def password(self) -> str | None:
        if not self.password_env and not self.password_file:
            return None
        return read_secret(self.password_env, self.password_file)


class LimitsConfig(_Strict):
    ack_limit: int = Field(5, ge=0, description="acknowledgements per sender per hour")
    auto_per_case: int = Field(20, ge=0, description="automatic mails per case, all kinds")
    max_attachment_size: int = Field(26_214_400, gt=0)
    blocked_extensions: list[str] = [".exe", ".bat", ".cmd", ".com", ".scr", ".js", ".vbs", ".ps1", ".msi", ".jar"]


class IngestConfig(_Strict):
    workers: int = Field(-1, ge=-1, le=64, description=(
        "processes that parse, classify and extract batches (IMAP, import) while the previous "
        "batch is written; -1: one per usable CPU beyond the first (at most 4), 0: none"))


class SecurityConfig(_Strict):
    secret_env: str | None = "MAILBOT_SECRET"
    secret_file: str | None = None
    secret: str | None = Field(None, description="only for demos and tests")
    require_authenticated_agents: bool = False
    trusted_authserv_id: str | None = None
    agent_token_days: int = Field(90, ge=1)

    def resolved_secret(self) -> str:
        if self.secret:
            return self.secret
        try:
            return read_secret(self.secret_env, self.secret_file)
        except ValueError:
            return "mailbot-insecure-default-secret"


class Category(_Strict):
    key: str
    label: str
    keywords: list[str] = []
    tier: str | None = None  # one of the brand's sla.tiers (checked across keys)


class SlaConfig(_Strict):
    ack_business_hours: float | None = Field(24, gt=0)
    ack_hours: float | None = Field(None, gt=0, description="calendar hours (overrides business hours)")
    tiers: dict[str, int] = {"simple": 5, "complex": 15, "exceptional": 30}
    default_tier: str = "simple"
    reminders: list[float] = [0.5, 0.8]
    escalate_at_breach: bool = True
    autoclose_days: int = Field(30, ge=0)
    reexamination_days: int = Field(15, ge=1)
    payment_services: bool = False

    @model_validator(mode="after")
    def _tiers_known(self) -> SlaConfig:
        for p in self.reminders:
            if not 0 < p < 1:
                raise ValueError(f"reminders must be fractions between 0 and 1, got {p}")
        return self


class BrandConfig(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    prefix: str = Field(pattern=r"^[A-Z]{1,6}$")
    addresses: list[str] = Field(min_length=1)
    language: str = "fr"
    languages: list[str] = ["fr", "en"]
    timezone: str = "Europe/Paris"
    holidays_country: str = "FR"
    holidays_subdiv: str | None = None
    closed_days: list[date] = []
    categories: list[Category] = []
    default_category: str = "other"
    urgent_keywords: list[str] = []
    team: list[str] = []
    supervisor: str | None = None
    oncall: str | None = None
    mediation: str = ""
    postal_address: str = ""
    sla: SlaConfig = SlaConfig()
    final_sections: list[Literal["summary", "explanation", "steps", "corrective_measures", "solution"]] = [
        "summary", "explanation", "steps", "corrective_measures", "solution"]
    retention_years: int = Field(5, ge=1)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        out = []
        for a in v:
            if "@" not in a or " " in a or "+" in a.split("@")[0]:
                raise ValueError(f"{a!r} is not a plain address like support@example.com")
            out.append(a.lower())
        return out

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(v)
        except Exception as exc:
            raise ValueError(f"unknown IANA timezone {v!r}") from exc
        return v

    def category_tier(self, category: str | None) -> str:
        for c in self.categories:
            if c.key == category and c.tier:
                return c.tier
        return self.sla.default_tier


class AgentConfig(_Strict):
    email: str
    name: str = ""
    brands: list[str] = Field(min_length=1)
    role: Literal["agent", "supervisor", "admin"] = "agent"

    @field_validator("email")
    @classmethod
    def _lower(cls, v: str) -> str:
        if "@" not in v:
            raise ValueError(f"{v!r} is not an address")
        return v.lower()


class SchedulerConfig(_Strict):
    sla_interval: float = Field(60.0, gt=0)
    outbox_interval: float = Field(5.0, gt=0)
    reconcile_interval: float = Field(3600.0, gt=0)
    housekeeping_interval: float = Field(3600.0, gt=0)


class HttpConfig(_Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9925, ge=0, le=65535)


class Config(_Strict):
    database: DatabaseConfig = DatabaseConfig()
    smtp: SmtpConfig = SmtpConfig()
    imap: list[ImapConfig] = []
    outbound: OutboundConfig = OutboundConfig()
    limits: LimitsConfig = LimitsConfig()
    ingest: IngestConfig = IngestConfig()
    security: SecurityConfig = SecurityConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    http: HttpConfig = HttpConfig()
    templates_dir: str = "templates"
    brands: list[BrandConfig] = Field(min_length=1)
    agents: list[AgentConfig] = []
    source_path: str = Field("<memory>", exclude=True)

    # -- lookups used across the code -------------------------------------
    def brand(self, key: str) -> BrandConfig:
        for b in self.brands:
            if b.key == key:
                return b
        raise KeyError(key)

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


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists each one."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


def read_secret(env: str | None, file: str | None) -> str:
    if env and os.environ.get(env):
        return os.environ[env]
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read password_file {file}: {exc.strerror}") from exc
    raise ValueError(f"secret not found (env {env!r} unset, no file)")


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_config(data: dict, path: str = "<memory>") -> Config:
    try:
        cfg = Config.model_validate({**data, "source_path": path})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = _loc(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling against the documented keys)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            shown = err["type"] not in ("missing", "extra_forbidden") and not isinstance(err.get("input"), dict | list)
            problems.append(f"key {key}: {msg}" + (f" (got {err['input']!r})" if shown else ""))
        raise ConfigError(path, problems) from None
    problems = cross_problems(cfg)
    if problems:
        raise ConfigError(path, problems)
    return cfg


def cross_problems(cfg: Config) -> list[str]:
    """Checks that involve several keys; each names the key at fault."""
    out: list[str] = []
    keys = [b.key for b in cfg.brands]
    seen_keys: set[str] = set()
    seen_prefix: dict[str, str] = {}
    seen_addr: dict[str, str] = {}
    for i, b in enumerate(cfg.brands):
        if b.key in seen_keys:
            out.append(f"key brands[{i}].key: {b.key!r} is already used by another brand (keys must be unique)")
        seen_keys.add(b.key)
        if b.prefix in seen_prefix:
            out.append(f"key brands[{i}].prefix: {b.prefix!r} is already the prefix of {seen_prefix[b.prefix]}")
        seen_prefix.setdefault(b.prefix, b.key)
        for a in b.addresses:
            if a in seen_addr:
                out.append(f"key brands[{i}].addresses: {a} already belongs to {seen_addr[a]} "
                           "(an address routes to one brand)")
            seen_addr.setdefault(a, b.key)
        if b.sla.default_tier not in b.sla.tiers:
            out.append(f"key brands[{i}].sla.default_tier: {b.sla.default_tier!r} is not one of "
                       f"brands[{i}].sla.tiers {sorted(b.sla.tiers)}")
        for j, c in enumerate(b.categories):
            if c.tier and c.tier not in b.sla.tiers:
                out.append(f"key brands[{i}].categories[{j}].tier: {c.tier!r} is not one of "
                           f"brands[{i}].sla.tiers {sorted(b.sla.tiers)}")
    for i, a in enumerate(cfg.agents):
        for bk in a.brands:
            if bk not in keys:
                out.append(f"key agents[{i}].brands: unknown brand {bk!r} (known: {keys})")
    for i, im in enumerate(cfg.imap):
        if im.brand and im.brand not in keys:
            out.append(f"key imap[{i}].brand: unknown brand {im.brand!r} (known: {keys})")
        if im.folder in (im.processed_folder, im.quarantine_folder):
            out.append(f"key imap[{i}].processed_folder: must differ from folder {im.folder!r} "
                       "(else processed mail would be fetched again)")
    return out


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"not valid TOML: {exc}"]) from None
    return parse_config(data, str(p))
