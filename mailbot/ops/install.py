"""The production install's last step (`make install` runs it from the new virtualenv).

    python -m mailbot.ops.install --source CHECKOUT --prefix /opt/mailbot \\
        --etc /etc/mailbot --units /etc/systemd/system --state /var/lib/mailbot

`make install` has already made a virtualenv at PREFIX holding mailbot and its
runtime dependencies only (no test tools). This step puts in place what is not
Python, and never overwrites what an admin may have edited:

- ETC/config.toml: the shipped config with production paths (database and
  outgoing files under STATE, the relay on 127.0.0.1:25, the secret files in
  ETC, /healthz and /metrics on); kept if it exists;
- ETC/templates/: the mail templates (kept if the directory exists);
- ETC/secret (and ETC/web-secret): a random key, mode 0640, group `mailbot`
  when that group exists (else 0600); kept if it exists;
- ETC/env: a commented file for passwords (kept if it exists);
- UNITS/*.service|*.timer: the systemd units, naming PREFIX/bin/mailbot and ETC,
  and PREFIX/docs/ (always written: they belong to the release).
"""

from __future__ import annotations

import argparse
import grp
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

SHIPPED_PREFIX = "/opt/mailbot"  # the paths the units in systemd/ name
SHIPPED_ETC = "/etc/mailbot"

ENV_FILE = """\
# Secrets for mailbot's units (EnvironmentFile=), mode 0640, group mailbot.
# The token keys are in {etc}/secret and {etc}/web-secret; put passwords here:
# MAILBOT_SMTP_PASSWORD=relay-password        ([outbound] password_env)
# MAILBOT_IMAP_PASSWORD=imap-password         ([[imap]] password_env)
# PGPASSWORD=database-password                (PostgreSQL; the URL stays password-free)
"""


def production_config(text: str, etc: Path, state: Path) -> str:
    """The shipped config.toml with the paths and relay of a server. Each change must
    apply exactly once: a shipped file that no longer matches fails here, loudly."""
    changes = [
        (r'^url = "sqlite:///var/mailbot\.db"', f'url = "sqlite:///{state}/mailbot.db"'),
        (r'^transport = "maildir"( *)#[^\n]*', r'transport = "smtp"\1# the local Postfix (docs/operations.md §2)'),
        (r'^path = "var/sent"', f'host = "127.0.0.1"\nport = 25\npath = "{state}/sent"'),
        (r'^path = "var/letters"', f'path = "{state}/letters"'),
        (r'^secret_file = "var/secret"', f'secret_file = "{etc}/secret"'),
        (r'^socket = "var/mailbot\.lmtp"', f'socket = "{state}/mailbot.lmtp"'),
        (r'^enabled = false( *)# true in production[^\n]*', r'enabled = true\1# /healthz and /metrics'),
    ]
    optional = [(r'^# secret_file = "/etc/mailbot/web-secret"', f'secret_file = "{etc}/web-secret"')]
    for pattern, new in changes + optional:
        text, n = re.subn(pattern, new, text, count=1, flags=re.MULTILINE)
        if n != 1 and (pattern, new) in changes:
            raise SystemExit(f"install: the shipped config.toml has no line matching {pattern!r}")
    return text


def write_secret(path: Path) -> str:
    """A new random key, readable by root and the group `mailbot` (or its owner only)."""
    if path.exists():
        return f"kept {path}"
    gid = _mailbot_gid()
    mode = 0o640 if gid is not None else 0o600
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.chmod(path, mode)  # whatever the umask
    if gid is not None and os.geteuid() == 0:
        os.chown(path, 0, gid)
    return f"created {path} (mode {mode:o}{', group mailbot' if gid is not None else ''})"


def _mailbot_gid() -> int | None:
    try:
        return grp.getgrnam("mailbot").gr_gid
    except KeyError:
        return None


def install_units(source: Path, units: Path, prefix: Path, etc: Path) -> list[str]:
    units.mkdir(parents=True, exist_ok=True)
    done = []
    for unit in sorted([*source.glob("*.service"), *source.glob("*.timer")]):
        text = unit.read_text().replace(SHIPPED_PREFIX + "/", f"{prefix}/").replace(SHIPPED_ETC + "/", f"{etc}/")
        (units / unit.name).write_text(text)
        done.append(f"installed {units / unit.name}")
    return done


def install(source: Path, prefix: Path, etc: Path, units: Path, state: Path) -> list[str]:
    """Put everything in place; the lines to print."""
    out = []
    etc.mkdir(parents=True, exist_ok=True, mode=0o750)
    config = etc / "config.toml"
    if config.exists():
        out.append(f"kept {config} (compare it with {source / 'config.toml'} after an upgrade)")
    else:
        config.write_text(production_config((source / "config.toml").read_text(), etc, state))
        config.chmod(0o640)
        out.append(f"created {config}")
    templates = etc / "templates"
    if templates.exists():
        out.append(f"kept {templates}/")
    else:
        shutil.copytree(source / "templates", templates)
        out.append(f"created {templates}/")
    out.append(write_secret(etc / "secret"))
    out.append(write_secret(etc / "web-secret"))
    env = etc / "env"
    if not env.exists():
        env.write_text(ENV_FILE.format(etc=etc))
        env.chmod(0o640 if _mailbot_gid() is not None else 0o600)
        out.append(f"created {env}")
    if _mailbot_gid() is not None and os.geteuid() == 0:
        for path in (etc, config, env):
            os.chown(path, 0, _mailbot_gid())  # type: ignore[arg-type]
    shutil.copytree(source / "docs", prefix / "docs", dirs_exist_ok=True)  # the units' Documentation=
    out += install_units(source / "systemd", units, prefix, etc)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mailbot.ops.install", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=Path.cwd(), help="the checkout (config.toml, templates/, systemd/)")
    p.add_argument("--prefix", type=Path, default=Path("/opt/mailbot"), help="the virtualenv mailbot is in")
    p.add_argument("--etc", type=Path, default=Path("/etc/mailbot"), help="configuration and secrets")
    p.add_argument("--units", type=Path, default=Path("/etc/systemd/system"), help="where the units go")
    p.add_argument("--state", type=Path, default=Path("/var/lib/mailbot"), help="the data (systemd's StateDirectory)")
    args = p.parse_args(argv)
    for line in install(args.source.resolve(), args.prefix.resolve(), args.etc.resolve(),
                        args.units.resolve(), args.state):
        print(line)
    if _mailbot_gid() is None:
        print("note: no group `mailbot` yet: the secrets are readable by their owner only; create the user "
              "(docs/operations.md §1), then `chgrp mailbot` them and `chmod 0640`", file=sys.stderr)
    print(f"next: edit {args.etc}/config.toml (brands, addresses, staff), then "
          f"`{args.prefix}/bin/mailbot --config {args.etc}/config.toml check-config` (docs/operations.md §1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
