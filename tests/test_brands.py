"""A brand is config and templates: a third one needs no code (its name, addresses, prefix,
time zone, tiers and mediator come from config.toml, check-config included)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailbot.app import App
from mailbot.config import parse_config
from tests.conftest import ROOT, Clock, config_data
from tests.desk import Desk
from tests.mails import mail
from tests.procs import to_toml

ACME = {
    "key": "acme-energie", "name": "Acme Énergie", "prefix": "AE",
    "addresses": ["reclamations@acme-energie.example"], "language": "fr", "languages": ["fr"],
    "timezone": "Europe/Brussels", "holidays_country": "BE", "default_category": "facture",
    "categories": [{"key": "facture", "label": "Facturation", "keywords": ["facture"]}],
    "mediator": {"name": "Service de Médiation de l'Énergie", "website": "https://www.mediateurenergie.be"},
    "sla": {"tiers": {"express": 3, "standard": 10}, "default_tier": "express"},
}
# The brand's own wording names its own tiers (a tier the brand does not have is no key here).
DEADLINE = ('{% extends "_default/acknowledgement.EXT" %}\n{% block deadline %}\n'
            'Votre réclamation suit notre formule {{ {"express": "express (3 jours ouvrés)", '
            '"standard": "standard (10 jours ouvrés)"}[case.tier] }} : réponse au plus tard le '
            '{{ case.due_at|date }}.\n\n{% endblock %}\n')


@pytest.mark.slow  # check-config in a fresh process: left out by `make test-fast`
def test_a_third_brand_by_config_and_templates_alone(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "acme-energie" / "fr").mkdir(parents=True)
    for ext in ("txt", "html"):
        (templates / "acme-energie" / "fr" / f"acknowledgement.{ext}").write_text(DEADLINE.replace("EXT", ext))
    data = config_data(tmp_path, templates_dir=str(templates))
    data["brands"] = [*data["brands"], ACME]
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data))

    check = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(path), "check-config"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "OK (3 brands" in check.stdout

    app = App.open(parse_config(data, str(path)), upgrade=True, clock=Clock())
    try:
        desk = Desk(app)
        desk.receive(mail(to="reclamations@acme-energie.example", subject="Facture de novembre"),
                     rcpt="reclamations@acme-energie.example")
        (ack,) = desk.new_mail()
        assert ack["Subject"] == "[AE-2026-000001] Accusé de réception de votre réclamation : Facture de novembre"
        assert "Acme Énergie" in str(ack["From"]) and "reclamations@acme-energie.example" in str(ack["From"])
        text = ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "formule express (3 jours ouvrés)" in text
        assert "réponse au plus tard le jeudi 26 novembre 2026" in text  # 3 business days after Monday 23
    finally:
        app.close()
