"""A letter's PDF: the mail's HTML template, rendered with the `letter` context (brand
letterhead and postal address, the customer's postal address, place, date, reference),
turned into an A4 PDF by WeasyPrint (a maintained HTML/CSS-to-PDF library, not a
hand-drawn PDF). Rendered once, kept on the row: a reprint is the same letter."""

from __future__ import annotations

from datetime import datetime

from mailbot.app import App
from mailbot.models import Case, Letter
from mailbot.outgoing import templating
from mailbot.outgoing.audiences import rendered_for_customer
from mailbot.outgoing.case_context import context


def letter_context(app: App, case: Case, letter: Letter) -> dict[str, str]:
    brand = app.config.brand(case.brand)
    cal = app.calendar(brand)
    place = _place(brand.postal_address) or brand.name
    return {"date": cal.local(letter.created_at).date().isoformat(), "place": place,
            "to_name": letter.to_name or case.customer_name, "to_address": letter.to_address}


def _place(postal_address: str) -> str:
    """The town of '… , 97150 Saint Martin' (the last part, without its postcode)."""
    last = postal_address.rsplit(",", 1)[-1].strip()
    words = last.split(" ", 1)
    return words[1] if len(words) == 2 and words[0].isdigit() else last


def render(app: App, case: Case, letter: Letter) -> bytes:
    from weasyprint import HTML  # imported when a letter is rendered: ~0.5 s, not on every start

    extra = {**(letter.context or {}), "letter": letter_context(app, case, letter)}
    rendered = rendered_for_customer(app.config, templating.renderer(app).render(
        case.brand, letter.language or case.language, letter.kind, context(app, case, None, **extra)))
    pdf = HTML(string=rendered.html).write_pdf()
    assert pdf is not None
    return pdf


def stamp(letter: Letter, pdf: bytes, at: datetime) -> None:
    letter.pdf, letter.rendered_at, letter.last_error = pdf, at, None
