"""Mail templates: every kind renders for every brand and language, customer text stays data."""

from __future__ import annotations

import copy
import html
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from mailbot.config import BrandConfig
from mailbot.mail.headers import _clean_header_any
from mailbot.outgoing.templating import (
    CASELESS_KINDS,
    KINDS,
    MISSING_LABELS,
    Renderer,
    TemplateError,
    TemplateSecurityError,
    clean_header,
    format_date,
    format_datetime,
    format_money,
    missing_label,
    sample_context,
)
from tests.conftest import make_config

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SHIPPED_BRANDS = {b.key: b for b in make_config(Path("/nonexistent")).brands}  # config.toml's
BRANDS = {key: b.name for key, b in SHIPPED_BRANDS.items()}
ACME = BrandConfig(key="acme", name="Acme", prefix="AC", addresses=["support@acme.example"])
LANGUAGES = ("fr", "en")
URGENT_MARK = {"fr": "traitée en priorité", "en": "handled as a priority"}
CONFIDENTIAL = {
    "fr": "traitée de manière strictement confidentielle",
    "en": "handled in strict confidence",
}
INJECTIONS = [
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    "{{ config }}{# comment #}{% raw %}",
    "<script>alert('x')</script> & \"quotes\"",
]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def ctx(brand: str, language: str, **case: Any) -> dict[str, Any]:
    c = sample_context(SHIPPED_BRANDS[brand], language)
    c["case"].update(case)
    return c


class _HtmlChecker(HTMLParser):
    VOID = {"br", "meta", "img", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack}")
        else:
            self.stack.pop()


def assert_valid_html(doc: str) -> None:
    assert doc.lstrip().startswith("<!DOCTYPE html>")
    checker = _HtmlChecker()
    checker.feed(doc)
    checker.close()
    assert not checker.errors, checker.errors
    assert checker.stack == [], checker.stack


# ---------------------------------------------------------------------------
# Every kind x language x brand


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("brand", sorted(BRANDS))
@pytest.mark.parametrize("urgent", [False, True])
def test_every_kind_renders(
    renderer: Renderer, brand: str, language: str, kind: str, urgent: bool
) -> None:
    c = ctx(brand, language, urgent=urgent)
    out = renderer.render(brand, language, kind, c)
    assert out.subject and "\n" not in out.subject and "\r" not in out.subject
    assert not out.subject.startswith("Subject:")
    assert c["case"]["ref"] not in out.subject  # the mail builder adds "[REF] "
    assert (c["case"]["ref"] in out.text) is (kind not in CASELESS_KINDS)
    assert out.text.endswith("\n") and not out.text.startswith("\n")
    assert "\n\n\n" not in out.text
    assert_valid_html(out.html)
    assert f'<html lang="{language}">' in out.html
    assert (c["case"]["ref"] in out.html) is (kind not in CASELESS_KINDS)


def test_languages_and_fallback(renderer: Renderer) -> None:
    assert renderer.languages("kalra-plus") == ["en", "fr"]
    assert renderer.languages("divikeys") == ["en", "fr"]
    out = renderer.render("kalra-plus", "de", "acknowledgement", ctx("kalra-plus", "de"))
    assert out.subject.startswith("Accusé de réception")
    assert '<html lang="fr">' in out.html
    # a language code is never used as a path
    out = renderer.render("kalra-plus", "../../etc", "acknowledgement", ctx("kalra-plus", "fr"))
    assert out.subject.startswith("Accusé de réception")


def test_unknown_kind_or_bad_brand(renderer: Renderer) -> None:
    with pytest.raises(ValueError):
        renderer.render("kalra-plus", "fr", "nope", ctx("kalra-plus", "fr"))
    with pytest.raises(ValueError):
        renderer.render("../kalra-plus", "fr", "acknowledgement", ctx("kalra-plus", "fr"))


def test_shipped_templates_pass_check(renderer: Renderer) -> None:
    assert renderer.check(list(SHIPPED_BRANDS.values())) == []


def test_check_reports_unknown_language(renderer: Renderer) -> None:
    errors = renderer.check([SHIPPED_BRANDS["divikeys"].model_copy(update={"languages": ["fr", "de"]})])
    assert len(errors) == 1 and "divikeys/de" in errors[0]


# ---------------------------------------------------------------------------
# Acknowledgement content


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("brand", sorted(BRANDS))
def test_acknowledgement_content(renderer: Renderer, brand: str, language: str) -> None:
    c = ctx(brand, language, missing=list(MISSING_LABELS["fr"]))
    out = renderer.render(brand, language, "acknowledgement", c)
    html_text = html.unescape(out.html)
    for body in (out.text, html_text):
        assert c["case"]["ref"] in body
        assert format_datetime(c["case"]["received_at"], language) in body
        assert format_date(c["case"]["due_at"], language) in body
        for key in c["case"]["missing"]:
            assert missing_label(key, language) in body
        assert CONFIDENTIAL[language] in body
        assert c["reply_address"] in body
        assert URGENT_MARK[language] not in body


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("brand", sorted(BRANDS))
def test_acknowledgement_without_missing_items(
    renderer: Renderer, brand: str, language: str
) -> None:
    out = renderer.render(brand, language, "acknowledgement", ctx(brand, language, missing=[]))
    intro = {"fr": "éléments suivants", "en": "please send us the following"}[language]
    assert intro not in out.text and intro not in html.unescape(out.html)
    assert "<ul>" not in out.html


def test_acknowledgement_french_wording(renderer: Renderer) -> None:
    c = ctx("kalra-plus", "fr")
    text = renderer.render("kalra-plus", "fr", "acknowledgement", c).text
    assert "Nous avons bien reçu votre réclamation le mardi 1er décembre 2026 à 09:30" in text
    assert "au plus tard le mardi 8 décembre 2026" in text
    assert "  - la date des faits\n" in text
    assert "  - tout justificatif utile (captures d'écran, relevés, e-mails)\n" in text
    assert "en conservant la référence KP-2026-000123 dans l'objet" in text


def test_brand_deadline_wording(renderer: Renderer) -> None:
    bank = renderer.render("kalra-plus", "fr", "acknowledgement", ctx("kalra-plus", "fr")).text
    assert "sous 5, 15 ou 30 jours ouvrés selon la complexité" in bank
    platform = renderer.render("divikeys", "fr", "acknowledgement", ctx("divikeys", "fr")).text
    assert "délai de 15 jours ouvrés" in platform
    assert "des raisons de ce délai" in platform
    assert "5, 15 ou 30" not in platform
    en = renderer.render("divikeys", "en", "acknowledgement", ctx("divikeys", "en")).text
    assert "within 15 business days" in en


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("brand", sorted(BRANDS))
def test_urgent_wording_only_when_urgent(renderer: Renderer, brand: str, language: str) -> None:
    fraud = {"kalra-plus": {"fr": "opposition à votre carte", "en": "block your card"},
             "divikeys": {"fr": "mot de passe", "en": "change the password"}}[brand][language]
    calm = renderer.render(brand, language, "acknowledgement", ctx(brand, language))
    urgent = renderer.render(brand, language, "acknowledgement", ctx(brand, language, urgent=True))
    for body in (calm.text, html.unescape(calm.html)):
        assert URGENT_MARK[language] not in body and fraud not in body
    for body in (urgent.text, html.unescape(urgent.html)):
        assert URGENT_MARK[language] in body and fraud in body
    notif = renderer.render(brand, language, "agent_notification", ctx(brand, language))
    assert not notif.subject.startswith("URGENT")
    notif = renderer.render(brand, language, "agent_notification", ctx(brand, language, urgent=True))
    assert notif.subject.startswith("URGENT")


# ---------------------------------------------------------------------------
# Final response


def test_final_response_sections_per_brand(renderer: Renderer) -> None:
    bank = renderer.render("kalra-plus", "fr", "final_response", ctx("kalra-plus", "fr")).text
    for title in ("Explication du problème", "Mesures correctives", "Solution apportée"):
        assert f"\n{title}\n" in bank
    c = ctx("divikeys", "fr")
    platform = renderer.render("divikeys", "fr", "final_response", c).text
    for title in ("Résumé de votre réclamation", "Étapes suivies pour résoudre le problème",
                  "Solution apportée et actions correctives mises en place"):
        assert f"\n{title}\n" in platform
    for section in c["final"]["sections"].values():
        assert section in platform


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("brand", sorted(BRANDS))
def test_final_response_recourse(renderer: Renderer, brand: str, language: str) -> None:
    c = ctx(brand, language)
    reexam = {"fr": "demander un réexamen", "en": "ask for your case to be re-examined"}[language]
    out = renderer.render(brand, language, "final_response", c)
    mediator = c["brand"]["mediator"]
    for body in (out.text, html.unescape(out.html)):
        assert reexam in body
        assert c["brand"]["address"] in body
        for value in mediator.values():
            assert value in body
    c["final"].update(reexamination=True)  # the outcome of a re-examination: mediation, no other re-examination
    out = renderer.render(brand, language, "final_response", c)
    for body in (out.text, html.unescape(out.html)):
        assert reexam not in body
        assert mediator["name"] in body and mediator["website"] in body


def test_final_response_free_text_when_no_sections(renderer: Renderer) -> None:
    c = ctx("kalra-plus", "fr")
    c["final"]["sections"] = dict.fromkeys(c["final"]["sections"], "")
    c["message"]["text"] = "Votre virement a été retrouvé et recrédité."
    out = renderer.render("kalra-plus", "fr", "final_response", c)
    assert "Votre virement a été retrouvé et recrédité." in out.text
    assert "Explication du problème" not in out.text


# ---------------------------------------------------------------------------
# Customer text is data, never template source


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("kind", ["acknowledgement", "agent_notification", "urgent_alert"])
def test_injection_is_output_verbatim(renderer: Renderer, kind: str, payload: str) -> None:
    c = ctx("kalra-plus", "fr", subject=f"Objet {payload}", customer_name=f"Nom {payload}")
    c["message"].update(subject=f"Objet {payload}", text=f"Texte {payload}\nfin")
    out = renderer.render("kalra-plus", "fr", kind, c)
    assert f"Nom {payload}" in out.text or kind != "acknowledgement"
    if kind != "acknowledgement":
        assert f"Texte {payload}\nfin" in out.text
    assert f"Objet {payload}" in out.text
    if kind != "urgent_alert":  # its subject carries the category only
        assert "Objet " + clean_header(payload) in out.subject
    if kind != "acknowledgement":
        assert f"Texte {payload}\nfin" in html.unescape(out.html)
    assert str(escape(f"Objet {payload}")) in out.html
    assert f"Objet {payload}" in html.unescape(out.html)
    assert "<script>" not in out.html
    assert "loop" not in out.text.replace(payload, "")
    assert "49" not in out.text.replace(payload, "")


def test_html_escapes_and_text_does_not(renderer: Renderer) -> None:
    name = "O'Brien & <Sons>"
    out = renderer.render("divikeys", "en", "acknowledgement", ctx("divikeys", "en", customer_name=name))
    assert f"Dear {name}," in out.text
    assert "O&#39;Brien &amp; &lt;Sons&gt;" in out.html
    assert "<Sons>" not in out.html


def test_header_injection_in_customer_subject(renderer: Renderer) -> None:
    c = ctx("kalra-plus", "en", subject="Hello\r\nBcc: evil@x\r\n\r\nbody")
    for kind in KINDS:
        subject = renderer.render("kalra-plus", "en", kind, c).subject
        assert "\r" not in subject and "\n" not in subject


def test_clean_header_examples() -> None:
    assert clean_header("Hello\r\nBcc: evil@x") == "Hello Bcc: evil@x"
    assert clean_header("  a\tb\x00c\x1b[31m \u2028 d\u202e ") == "a b c [31m d"
    assert clean_header("Réclamation   n°\u00a012") == "Réclamation n° 12"


@settings(max_examples=1000, deadline=None)
@given(st.text(st.sampled_from("aé n°\u00a0\t\r\n\x00\x1b\x85\u2028\u2029\u200e\u202e\u2066\u00ad\ufeff")
               | st.characters()))
def test_clean_header_of_printable_text_is_the_general_one(value: str) -> None:
    """The shortcut for printable text (accented names and subjects) gives what the
    character-by-character path gives."""
    assert clean_header(value) == _clean_header_any(value)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_clean_header_never_leaves_line_breaks(value: str) -> None:
    out = clean_header(value)
    assert "\r" not in out and "\n" not in out
    assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) < 0xA0 for ch in out)
    assert out == out.strip()
    assert "  " not in out
    assert clean_header(out) == out


# ---------------------------------------------------------------------------
# Broken and hostile templates


def write_templates(root: Path, files: dict[str, str]) -> Renderer:
    for name, body in files.items():
        path = root / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return Renderer(root / "templates")


OK_HTML = "<!DOCTYPE html><html><body>{{ case.ref }}</body></html>\n"


def test_undefined_variable_names_the_file(tmp_path: Path) -> None:
    r = write_templates(tmp_path, {
        "acme/fr/acknowledgement.txt": "Subject: Bonjour\n\nRéf. {{ case.ref }}\n{{ case.nope }}\n",
        "_default/fr/acknowledgement.html": OK_HTML,
    })
    with pytest.raises(TemplateError) as err:
        r.render("acme", "fr", "acknowledgement", sample_context(ACME, "fr"))
    assert "templates/acme/fr/acknowledgement.txt:4" in str(err.value)
    assert "nope" in str(err.value)


def test_undefined_variable_in_partial_names_the_partial(tmp_path: Path) -> None:
    r = write_templates(tmp_path, {
        "_default/fr/acknowledgement.txt": 'Subject: x\n\n{% include "_part.txt" %}\n',
        "_default/fr/_part.txt": "ok\n{{ missing_var }}\n",
        "_default/fr/acknowledgement.html": OK_HTML,
    })
    with pytest.raises(TemplateError, match=r"templates/_default/fr/_part\.txt:2.*missing_var"):
        r.render("acme", "fr", "acknowledgement", sample_context(ACME, "fr"))


def test_missing_subject_line(tmp_path: Path) -> None:
    r = write_templates(tmp_path, {
        "acme/fr/acknowledgement.txt": "Bonjour\n\ncorps\n",
        "acme/fr/acknowledgement.html": OK_HTML,
    })
    with pytest.raises(TemplateError, match=r"acme/fr/acknowledgement\.txt.*Subject"):
        r.render("acme", "fr", "acknowledgement", sample_context(ACME, "fr"))


def test_missing_template_file(tmp_path: Path) -> None:
    r = write_templates(tmp_path, {"acme/fr/acknowledgement.txt": "Subject: x\n\ny\n"})
    with pytest.raises(TemplateError, match=r"acknowledgement\.html.*not found"):
        r.render("acme", "fr", "acknowledgement", sample_context(ACME, "fr"))


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ case.__class__.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''.format.__self__.__class__ }}",
    "{% set x = case.missing.append('pwned') %}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_escape_is_a_security_error(tmp_path: Path, payload: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = write_templates(tmp_path, {
        "acme/fr/acknowledgement.txt": f"Subject: x\n\n{payload}\n",
        "acme/fr/acknowledgement.html": OK_HTML,
    })
    c = sample_context(ACME, "fr")
    before = copy.deepcopy(c)
    with pytest.raises(TemplateSecurityError) as err:
        r.render("acme", "fr", "acknowledgement", c)
    assert isinstance(err.value, TemplateError)
    assert "acme/fr/acknowledgement.txt" in str(err.value)
    assert not (tmp_path / "PWNED").exists()
    assert c == before


def test_check_names_broken_template(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    broken = tmp_path / "templates" / "divikeys" / "en" / "final_response.txt"
    broken.write_text(broken.read_text() + "{% if %}\n", encoding="utf-8")
    undefined = tmp_path / "templates" / "_default" / "fr" / "reminder.html"
    undefined.write_text(undefined.read_text().replace("{{ case.ref }}", "{{ case.reff }}"))
    r = Renderer(tmp_path / "templates")
    errors = r.check(list(SHIPPED_BRANDS.values()))
    assert any("templates/divikeys/en/final_response.txt" in e and "syntax" in e for e in errors)
    assert any("templates/_default/fr/reminder.html" in e and "reff" in e for e in errors)
    assert all("templates/" in e for e in errors)


def test_check_reports_language_fallback(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    (tmp_path / "templates" / "_default" / "en" / "escalation.txt").unlink()
    errors = Renderer(tmp_path / "templates").check([SHIPPED_BRANDS["divikeys"]])
    assert len(errors) == 1 and "en/escalation.txt" in errors[0]


# ---------------------------------------------------------------------------
# Filters


def test_date_filters() -> None:
    assert format_date("2026-12-02T14:00:00+01:00", "fr") == "mercredi 2 décembre 2026"
    assert format_date("2026-12-01", "fr") == "mardi 1er décembre 2026"
    assert format_date("2026-12-02T14:00:00-04:00", "en") == "Wednesday 2 December 2026"
    assert format_datetime("2026-12-02T14:00:00+01:00", "fr") == "mercredi 2 décembre 2026 à 14:00"
    assert format_datetime("2026-08-15T09:05:00+02:00", "en") == "Saturday 15 August 2026 at 09:05"
    assert format_datetime("2026-08-15", "en") == "Saturday 15 August 2026"
    # a time names its zone (and is shown in it); a date alone stays a date
    assert format_datetime("2026-12-28T17:00:00+01:00", "fr", "Europe/Paris") == \
        "lundi 28 décembre 2026 à 17:00 (heure de Paris)"
    assert format_datetime("2026-12-28T21:00:00+00:00", "en", "America/Marigot") == \
        "Monday 28 December 2026 at 17:00 (Saint-Martin time)"
    assert format_datetime("2026-12-28T17:00:00-05:00", "fr", "America/New_York") == \
        "lundi 28 décembre 2026 à 17:00 (America/New_York)"
    assert format_datetime("2026-12-28", "fr", "Europe/Paris") == "lundi 28 décembre 2026"
    assert format_date("", "fr") == ""
    with pytest.raises(ValueError):
        format_date("next tuesday", "fr")


def test_missing_labels_and_money() -> None:
    assert missing_label("date_faits", "fr") == "la date des faits"
    assert missing_label("montant", "en") == "the amount or amounts"
    assert missing_label("autre_chose", "fr") == "autre chose"
    assert set(MISSING_LABELS["fr"]) == set(MISSING_LABELS["en"])
    assert format_money({"value": "1234.5", "currency": "EUR"}, "fr") == "1\u202f234,50 EUR"
    assert format_money({"value": 1234.5, "currency": "EUR"}, "en") == "EUR 1,234.50"


def test_kind_specific_keys_default_to_empty(renderer: Renderer) -> None:
    c = sample_context(SHIPPED_BRANDS["divikeys"], "fr")
    for key in ("extension", "reminder", "final", "rejection", "commands", "agent", "security"):
        del c[key]
    out = renderer.render("divikeys", "fr", "acknowledgement", c)
    assert "DK-2026-000123" in out.text


_A_TIME = re.compile(r"(?: à | at )\d{2}:\d{2}")


@pytest.mark.parametrize("brand", sorted(BRANDS))
@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_time_a_mail_shows_names_its_zone(brand: str, language: str) -> None:
    """Issue 22 item 9: wherever a mail of the shipped templates (customer's or staff's,
    text and HTML, the brand's overrides included) shows a time, the brand's time zone is
    named right after it; dates alone stay dates."""
    zones = {"kalra-plus": "Europe/Paris", "divikeys": "America/Marigot"}
    named = {("Europe/Paris", "fr"): "heure de Paris", ("Europe/Paris", "en"): "Paris time",
             ("America/Marigot", "fr"): "heure de Saint-Martin", ("America/Marigot", "en"): "Saint-Martin time"}
    label = named[zones[brand], language]
    r = Renderer(TEMPLATES, zones=zones)
    shown = 0
    for kind in KINDS:
        out = r.render(brand, language, kind, ctx(brand, language))
        for part in (out.text, html.unescape(out.html)):
            for m in _A_TIME.finditer(part):
                shown += 1
                assert part[m.end():].startswith(f" ({label})"), (kind, part[m.start() - 60:m.end() + 30])
    assert shown >= 10
