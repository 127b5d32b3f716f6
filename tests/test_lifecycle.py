"""A case's whole life driven with `mailbot tick --now`: acknowledgement, reminders once
each, escalation at breach, extension notice, final response, auto-close, re-examination."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.cases import actions
from mailbot.cases.deliveries import dispatch
from mailbot.cli.main import main
from mailbot.ingest.pipeline import ingest
from mailbot.models import Case, Event, Outbox
from tests.conftest import Clock, config_data, open_app
from tests.mails import mail
from tests.procs import to_toml

FINAL_KP = """Explication : le virement a été bloqué par un contrôle automatique.
Mesures correctives : le contrôle a été corrigé.
Solution : les fonds ont été crédités le 2 décembre.
"""


@pytest.fixture
def cli_app(tmp_path: Path, clock: Clock, db_url: str) -> tuple[str, App]:
    """A config file on disk (for `mailbot --config … tick`) and an App on the same database."""
    path = tmp_path / "config.toml"
    data = config_data(tmp_path, db_url)
    for brand in data["brands"]:  # the reminders followed here: for every case, not only urgent ones
        brand["digest"] = {**brand.get("digest", {}), "case_reminders": "all"}
    path.write_text(to_toml(data))
    from mailbot.config import load_config

    app = open_app(load_config(path), clock)
    yield str(path), app
    app.close()


def tick(path: str, when: str) -> None:
    assert main(["--config", path, "tick", "--now", when]) == 0


def kinds(app: App) -> Counter[str]:
    with db.session_scope(app.engine) as s:
        return Counter(s.exec(select(Outbox.kind)).all())


def case_of(app: App) -> Case:
    with db.session_scope(app.engine) as s:
        return s.exec(select(Case).order_by(col(Case.id).desc())).first()  # type: ignore[return-value]


def events(app: App, type_: str) -> list[Event]:
    with db.session_scope(app.engine) as s:
        return list(s.exec(select(Event).where(Event.type == type_)).all())


def received(clock: Clock, iso: str) -> None:
    clock.now = datetime.fromisoformat(iso)


def test_simple_tier_reminders_once_each_then_escalation(cli_app: tuple[str, App], clock: Clock) -> None:
    path, app = cli_app
    received(clock, "2026-11-23T10:00:00+01:00")  # Monday, Paris
    ingest(app, mail(subject="Virement non reçu"), "smtp")
    case = case_of(app)
    assert case.tier == "simple"
    assert app.calendar("kalra-plus").local(case.due_at).isoformat() == "2026-11-30T23:59:59+01:00"
    tick(path, "2026-11-25T12:00:00+00:00")
    assert kinds(app)["reminder"] == 0
    tick(path, "2026-11-27T12:00:00+00:00")  # past 50 %
    tick(path, "2026-11-27T12:05:00+00:00")
    assert kinds(app)["reminder"] == 1
    tick(path, "2026-11-29T18:00:00+00:00")  # past 80 %, but a Sunday: reminders wait for opening hours
    assert kinds(app)["reminder"] == 1
    tick(path, "2026-11-30T08:00:00+00:00")  # Monday 09:00 in Paris
    tick(path, "2026-11-30T08:05:00+00:00")
    assert kinds(app)["reminder"] == 2
    assert kinds(app)["escalation"] == 0
    tick(path, "2026-12-01T08:00:00+00:00")  # breached
    tick(path, "2026-12-02T08:00:00+00:00")
    assert kinds(app)["escalation"] == 1
    with db.session_scope(app.engine) as s:
        esc = s.exec(select(Outbox).where(Outbox.kind == "escalation")).one()
        assert esc.to_addr == "supervisor@kalra-plus.com" and esc.status == "sent"


def test_complex_tier_extension_final_and_autoclose(cli_app: tuple[str, App], clock: Clock) -> None:
    path, app = cli_app
    received(clock, "2026-05-07T10:00:00+02:00")  # before 8 May
    ingest(app, mail(subject="Frais injustifiés sur mon relevé", body="Des frais de 30 € ont été prélevés."),
           "smtp")
    case = case_of(app)
    assert case.tier == "complex"
    # 15 business days after 7 May 2026 (8 May, 14 May Ascension, 25 May Whit Monday are holidays).
    assert app.calendar("kalra-plus").local(case.due_at).date().isoformat() == "2026-06-02"
    with db.session_scope(app.engine) as s:
        c = s.get(Case, case.id)
        actions.extend(s, app, c, "agent@kalra-plus.com", 5, "analyse auprès de notre partenaire")  # type: ignore[arg-type]
    case = case_of(app)
    assert app.calendar("kalra-plus").local(case.due_at).date().isoformat() == "2026-06-09"
    dispatch(app)
    with db.session_scope(app.engine) as s:
        notice = s.exec(select(Outbox).where(Outbox.kind == "extension")).one()
        assert b"partenaire" in notice.raw
    received(clock, "2026-05-20T10:00:00+02:00")
    with db.session_scope(app.engine) as s:
        c = s.get(Case, case.id)
        actions.final(s, app, c, "agent@kalra-plus.com", FINAL_KP, about=None)  # type: ignore[arg-type]
    assert case_of(app).status == "answered"
    tick(path, "2026-06-10T10:00:00+00:00")  # after the deadline: answered cases do not escalate
    assert kinds(app)["escalation"] == 0
    tick(path, "2026-06-19T10:00:00+00:00")  # 30 days after the final response
    assert case_of(app).status == "closed"


def test_exceptional_tier_by_command(cli_app: tuple[str, App], clock: Clock) -> None:
    _path, app = cli_app
    received(clock, "2026-12-14T10:00:00+01:00")
    ingest(app, mail(), "smtp")
    case = case_of(app)
    with db.session_scope(app.engine) as s:
        actions.set_tier(s, app, s.get(Case, case.id), "agent@kalra-plus.com", "exceptional")  # type: ignore[arg-type]
    case = case_of(app)
    assert case.tier == "exceptional"
    assert app.calendar("kalra-plus").local(case.due_at).date().isoformat() == "2027-01-27"


def test_platform_case_received_on_23_december(cli_app: tuple[str, App], clock: Clock) -> None:
    _path, app = cli_app
    received(clock, "2026-12-23T10:00:00-04:00")
    ingest(app, mail(to="info@divikeys.com", subject="Remboursement de mon investissement"), "smtp")
    case = case_of(app)
    assert case.brand == "divikeys" and case.tier == "standard"
    assert app.calendar("divikeys").local(case.due_at).date().isoformat() == "2027-01-15"
    assert (case.ack_due_at - case.received_at).total_seconds() == 48 * 3600  # type: ignore[operator]


def test_reexamination_after_final_response_carries_mediation(cli_app: tuple[str, App], clock: Clock) -> None:
    _path, app = cli_app
    received(clock, "2026-11-23T10:00:00+01:00")
    ingest(app, mail(message_id="<orig@example.org>"), "smtp")
    case = case_of(app)
    with db.session_scope(app.engine) as s:
        actions.final(s, app, s.get(Case, case.id), "agent@kalra-plus.com", FINAL_KP, about=None)  # type: ignore[arg-type]
    received(clock, "2026-11-26T10:00:00+01:00")
    ingest(app, mail(subject="Re: je conteste", In_Reply_To="<orig@example.org>"), "smtp")
    case = case_of(app)
    assert case.status == "reexamination"
    assert kinds(app)["reexamination_ack"] == 1
    with db.session_scope(app.engine) as s:
        actions.final(s, app, s.get(Case, case.id), "agent@kalra-plus.com", FINAL_KP, about=None)  # type: ignore[arg-type]
    dispatch(app)
    with db.session_scope(app.engine) as s:
        finals = s.exec(select(Outbox).where(Outbox.kind == "final_response").order_by(col(Outbox.id))).all()
    mediation = "médiateur".encode()
    import email
    from email.policy import default

    texts = [email.message_from_bytes(f.raw, policy=default).get_body(("plain",)).get_content() for f in finals]
    assert "médiateur" in texts[1]
    assert mediation  # the first final response (accepted) need not carry it


def test_restart_between_steps_changes_nothing(cli_app: tuple[str, App], clock: Clock,
                                               make_app: Callable[..., App]) -> None:
    path, app = cli_app
    received(clock, "2026-11-23T10:00:00+01:00")
    ingest(app, mail(), "smtp")
    for _ in range(3):  # each tick is a fresh process: a restart between any two steps
        tick(path, "2026-11-27T12:00:00+00:00")
    assert kinds(app)["reminder"] == 1
    assert len(events(app, "reminder")) == 1
