"""`require_authenticated_agents` cannot be bypassed (#27 item 2): only the topmost
Authentication-Results of the trusted authserv-id counts, and only for exactly the
From domain; the setting without an authserv-id is a configuration error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailbot.app import App
from mailbot.cases.agent_mail import authenticated
from mailbot.config import ConfigError, load_config
from mailbot.mail.parsing import parse
from mailbot.ops.checks import check_file
from tests.mails import mail
from tests.test_agents import Desk, agent_reply, customer_writes
from tests.test_config_errors import edited
from tests.test_smtp import listening

MTA = "mx.kalra-plus.com"
AGENT = "agent@kalra-plus.com"


def headers(*values: str) -> bytes:
    """A mail from the agent whose Authentication-Results are `values`, topmost first."""
    raw = mail(frm=AGENT)
    return b"".join(b"Authentication-Results: " + v.encode() + b"\r\n" for v in values) + raw


def verdict(*values: str, trusted: str | None = MTA, sender: str = AGENT) -> str | None:
    return authenticated(parse(headers(*values)), sender, trusted)


@pytest.mark.parametrize("value", [
    f"{MTA}; dkim=pass header.d=evilkalra-plus.com",                       # look-alike domain
    f"{MTA}; dkim=pass header.d=kalra-plus.com.evil.test",                 # suffix domain
    f"{MTA}; spf=pass smtp.mailfrom=x@kalra-plus.com.evil.test",
    f"{MTA}; spf=pass smtp.mailfrom=x@evil.test (kalra-plus.com)",         # a comment names it
    f"{MTA}; dkim=pass header.d=com",                                      # a parent domain
    f"{MTA}; dkim=fail header.d=kalra-plus.com; dkim=neutral header.d=kalra-plus.com",
    f"{MTA}; arc=pass header.d=kalra-plus.com",                            # not a method that vouches
    f"{MTA}.evil.test; dkim=pass header.d=kalra-plus.com",                 # another authserv-id
])
def test_look_alike_suffix_and_foreign_passes_do_not_authenticate(value: str) -> None:
    assert verdict(value) is not None


@pytest.mark.parametrize("value", [
    f"{MTA}; dkim=pass header.d=kalra-plus.com header.s=sel",
    f"{MTA} 1; dkim=pass (good signature) header.i=@Kalra-Plus.com",
    f"{MTA}; spf=pass smtp.mailfrom=agent@kalra-plus.com",
    f"{MTA}; dmarc=pass (p=reject) header.from=kalra-plus.com",
    f"{MTA}; dkim=fail header.d=kalra-plus.com; spf=pass smtp.mailfrom=\"agent@kalra-plus.com\"",
])
def test_a_pass_for_exactly_the_from_domain_authenticates(value: str) -> None:
    assert verdict(value) is None


def test_a_pass_written_below_the_receiving_mta_s_fail_is_ignored() -> None:
    mta_fail = f"{MTA}; dkim=fail header.d=kalra-plus.com; spf=fail smtp.mailfrom=agent@kalra-plus.com"
    self_written = f"{MTA}; dkim=pass header.d=kalra-plus.com"
    assert verdict(mta_fail, self_written) is not None
    # another MTA's header above ours does not hide ours
    assert verdict("relay.example; dkim=fail header.d=x", self_written) is None


def test_without_an_authserv_id_nothing_authenticates() -> None:
    assert verdict(f"{MTA}; dkim=pass header.d=kalra-plus.com", trusted=None) is not None


@pytest.mark.slow  # a fresh process: left out by `make test-fast`
def test_the_setting_without_an_authserv_id_is_a_configuration_error(tmp_path: Path) -> None:
    path, _ = edited(tmp_path, ("require_authenticated_agents = false", "require_authenticated_agents = true"))
    report = check_file(str(path))
    assert any("trusted_authserv_id" in str(p) for p in report.errors)
    with pytest.raises(ConfigError):
        load_config(path)
    path, _ = edited(tmp_path, ("require_authenticated_agents = false", "require_authenticated_agents = true"),
                     ('# trusted_authserv_id = "mx.kalra-plus.com"', 'trusted_authserv_id = "mx.kalra-plus.com"'))
    assert check_file(str(path)).errors == []


def test_a_forged_pass_below_the_mta_s_fail_changes_nothing_on_the_case(make_app: Callable[..., App]) -> None:
    app = make_app(security={"secret": "s3cret-0123456789", "require_authenticated_agents": True,
                             "trusted_authserv_id": MTA})
    with listening(app) as port:
        desk = Desk(app, port)
        notif = customer_writes(desk)
        raw, reply_to = agent_reply(notif, "#priority urgent")
        forged = (f"Authentication-Results: {MTA}; dkim=fail header.d=kalra-plus.com\r\n"
                  f"Authentication-Results: {MTA}; dkim=pass header.d=kalra-plus.com\r\n").encode() + raw
        desk.send(forged, reply_to, AGENT)
        assert desk.case().priority == "normal"
        (event,) = desk.events("security")
        assert "no DKIM/SPF/DMARC pass for kalra-plus.com" in event.data["reason"]
