"""Reply stripping (mailbot.mail.quotes): the talon corpus, hand-written client layouts,
agent commands and robustness properties."""

from __future__ import annotations

import csv
import email
import re
import time
from email import policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.mail.quotes import MAX_CHARS, split_commands, strip_reply

TALON = Path(__file__).resolve().parent / "corpora" / "talon"
FIXTURES = TALON / "tests" / "fixtures"

# talon's labels come from its quote extractor, which keeps signatures; strip_reply
# also removes "-- " blocks and "Sent from my iPhone" lines (our policy), so for
# these entries the label with its signature removed is what we expect.
SIGNATURE_POLICY = {
    "tests/fixtures/standard_replies/iphone.eml": "Hello",
    "tests/fixtures/standard_replies/sparrow.eml": "Hello",
}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _first_part(path: Path, content_type: str) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    for part in message.walk():
        if part.get_content_type() == content_type:
            return str(part.get_content())
    raise AssertionError(f"{path.name}: no {content_type} part")


def _talon_rows() -> list[dict[str, str]]:
    with (TALON / "expected_replies.tsv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _talon_reply(row: dict[str, str]) -> str:
    """strip_reply on the entry: the first text/plain part, or the HTML file."""
    path = TALON / row["file"]
    if row["compare"].startswith("plain"):
        return strip_reply(_first_part(path, "text/plain"))
    return strip_reply("", path.read_text(encoding="utf-8"))


def test_talon_expected_replies() -> None:
    rows = _talon_rows()
    assert len(rows) == 21
    raw_hits, policy_hits, misses = 0, 0, []
    for row in rows:
        got = _norm(_talon_reply(row))
        label = row["expected_reply"].replace("\\n", "\n")
        expected = SIGNATURE_POLICY.get(row["file"], label)
        raw_hits += got == _norm(label)
        policy_hits += got == _norm(expected)
        if got != _norm(expected):
            misses.append((row["file"], got, expected))
    raw_rate, policy_rate = raw_hits / len(rows), policy_hits / len(rows)
    print(f"talon: {raw_hits}/{len(rows)} = {raw_rate:.1%} against the labels as given; "
          f"{policy_hits}/{len(rows)} = {policy_rate:.1%} with signatures stripped")  # fmt: skip
    assert raw_rate >= 0.9
    assert policy_rate >= 0.9, misses


def test_talon_inline_expectations() -> None:
    """Fixtures whose expectations live in talon's test code, not in the TSV."""
    olk = (FIXTURES / "OLK_SRC_BODY_SECTION.html").read_text()
    assert strip_reply("", olk) == "Reply"
    hr = (FIXTURES / "reply-separated-by-hr.html").read_text()
    assert _norm(strip_reply("", hr)) == "Hi there Bob"
    shared = FIXTURES / "reply-quotations-share-block.eml"
    for reply in (
        strip_reply(_first_part(shared, "text/plain")),
        strip_reply("", _first_part(shared, "text/html")),
    ):
        assert reply.startswith("Hi Katharine.")
        assert "From" not in reply and "wrote" not in reply


@pytest.mark.parametrize(
    "name", ["android", "aol", "comcast", "gmail", "hotmail", "outlook", "sparrow"]
)
def test_talon_html_parts(name: str) -> None:
    """The HTML alternative of each talon reply gives the same new text."""
    html = _first_part(FIXTURES / "standard_replies" / f"{name}.eml", "text/html")
    expected = "Allo! Follow up MIME!" if name == "outlook" else "Hello"
    assert strip_reply("", html) == expected


# --- hand-written replies: (name, raw text, exact expected result) ---------------

OWN_REPLIES: list[tuple[str, str, str]] = [
    (
        "outlook-fr-desktop",
        "Bonjour Madame Martin,\n\n"
        "Le remboursement des frais a été effectué ce matin.\n\n"
        "Cordialement,\nPaul Durand\n\n"
        "-- \nPaul Durand | Service réclamations\nTél. 01 23 45 67 89\n\n"
        "De : Marie Martin <marie.martin@example.fr>\n"
        "Envoyé : lundi 23 novembre 2026 10:02\n"
        "À : reclamations@example.com\n"
        "Objet : RE: [Dossier 1234] Frais bancaires\n\n"
        "Bonjour,\nJe conteste les frais prélevés le 3 novembre.\nMarie\n",
        "Bonjour Madame Martin,\n\n"
        "Le remboursement des frais a été effectué ce matin.\n\n"
        "Cordialement,\nPaul Durand",
    ),
    (
        "outlook-fr-web-underscores",
        "Merci, je transmets au service comptable.\r\n\r\nBien à vous,\r\nPaul\r\n\r\n"
        "--\r\nPaul Durand\r\nService clients\r\n\r\n"
        "________________________________\r\n"
        "De\u00a0: Marie Martin <m@x.fr>\r\n"
        "Envoyé\u00a0: lundi 23 novembre 2026 10:02\r\n"
        "À\u00a0: Service clients <support@x.fr>\r\n"
        "Objet\u00a0: Frais\r\n\r\nBonjour, où en est mon dossier ?\r\n",
        "Merci, je transmets au service comptable.\n\nBien à vous,\nPaul",
    ),
    (
        "outlook-en-desktop",
        "Hi Mary,\n\nThe refund was issued today; allow 3 business days.\n\n"
        "Kind regards,\nPaul\n\n"
        "-- \nPaul Smith\nCustomer Care | Example Bank\n\n"
        "From: Mary Martin <mary@example.com>\n"
        "Sent: Monday, November 23, 2026 10:02 AM\n"
        "To: complaints@example.com\n"
        "Cc: Legal <legal@example.com>\n"
        "Subject: RE: [Case 1234] Bank fees\n\n"
        "Hello,\nI dispute these fees.\n",
        "Hi Mary,\n\nThe refund was issued today; allow 3 business days.\n\nKind regards,\nPaul",
    ),
    (
        "outlook-en-bold-fields",
        "We have escalated your complaint.\n\nBest regards,\nPaul\n\n"
        "-- \nPaul Smith, Customer Care\n\n"
        "*From:* Mary Martin <mary@example.com>\n"
        "*Sent:* Monday, November 23, 2026 10:02 AM\n"
        "*To:* complaints@example.com\n"
        "*Subject:* Bank fees\n\nHello, any news?\n",
        "We have escalated your complaint.\n\nBest regards,\nPaul",
    ),
    (
        "outlook-en-original-message",
        "Your card has been replaced.\n\nThanks,\nPaul\n\n"
        "-- \nPaul Smith\n\n"
        "-----Original Message-----\n"
        "From: Mary <mary@example.com>\nSent: Monday, November 23, 2026 10:02 AM\n"
        "To: support@example.com\nSubject: Card blocked\n\nMy card is blocked.\n",
        "Your card has been replaced.\n\nThanks,\nPaul",
    ),
    (
        "thunderbird-fr-message-d-origine",
        "Le dossier est clos, le geste commercial a été appliqué.\n\nCordialement,\nPaul\n\n"
        "-- \nPaul Durand\nService réclamations\n\n"
        "-------- Message d'origine --------\n"
        "Sujet : Réclamation\nDate : 23/11/2026 10:02\n"
        "De : Marie <m@x.fr>\nPour : support@x.fr\n\nBonjour, j'attends toujours.\n",
        "Le dossier est clos, le geste commercial a été appliqué.\n\nCordialement,\nPaul",
    ),
    (
        "gmail-fr",
        "Bonjour Marie,\n\nVotre demande est en cours d'analyse.\n\nCordialement,\nPaul\n\n"
        "-- \nPaul Durand\nService clients\n\n"
        "Le lun. 23 nov. 2026 à 10:02, Marie Martin <m@x.fr> a écrit :\n\n"
        "> Bonjour,\n> Où en est ma réclamation ?\n> Marie\n",
        "Bonjour Marie,\n\nVotre demande est en cours d'analyse.\n\nCordialement,\nPaul",
    ),
    (
        "gmail-fr-wrapped-header",
        "Bonjour Marie,\n\nNous revenons vers vous sous 48 heures.\n\nCordialement,\nPaul\n\n"
        "-- \nPaul Durand\n\n"
        "Le lun. 23 nov. 2026 à 10:02, Marie Martin <\nmarie.martin@example.fr> a\u202fécrit\u00a0:\n\n"
        "> Bonjour,\n>\n> Toujours pas de nouvelles.\n",
        "Bonjour Marie,\n\nNous revenons vers vous sous 48 heures.\n\nCordialement,\nPaul",
    ),
    (
        "gmail-en",
        "Hi Mary,\n\nWe are looking into it.\n\nBest,\nPaul\n\n"
        "-- \nPaul Smith | Customer Care\n\n"
        "On Mon, Nov 23, 2026 at 10:02 AM Mary Martin <mary@example.com> wrote:\n\n"
        "> Hello,\n> Any news about my case?\n",
        "Hi Mary,\n\nWe are looking into it.\n\nBest,\nPaul",
    ),
    (
        "gmail-en-wrapped-header",
        "Hi Mary,\n\nThe fee will be refunded.\n\nRegards,\nPaul\n\n"
        "-- \nPaul Smith\n\n"
        "On Mon, Nov 23, 2026 at 10:02 AM Mary Martin <\nmary.martin@example.com> wrote:\n\n"
        "> Hello,\n> I was charged twice.\n",
        "Hi Mary,\n\nThe fee will be refunded.\n\nRegards,\nPaul",
    ),
    (
        "apple-mail-fr",
        "Bonjour Marie,\n\nC'est corrigé.\n\nCordialement,\nPaul\n\n"
        "-- \nPaul Durand\n\n"
        "> Le 23 nov. 2026 à 10:02, Marie <m@x.fr> a écrit :\n>\n"
        "> Bonjour,\n> Le virement n'est pas arrivé.\n",
        "Bonjour Marie,\n\nC'est corrigé.\n\nCordialement,\nPaul",
    ),
    (
        "apple-mail-fr-unquoted-header",
        "Bonjour Marie,\n\nLe virement est parti hier.\n\nCordialement,\nPaul\n\n"
        "-- \nPaul Durand\n\n"
        "Le 23 nov. 2026 à 10:02, Marie <m@x.fr> a écrit :\n\n"
        "> Bonjour,\n> Le virement n'est pas arrivé.\n",
        "Bonjour Marie,\n\nLe virement est parti hier.\n\nCordialement,\nPaul",
    ),
    (
        "apple-mail-en",
        "Hi Mary,\n\nDone, the card is unblocked.\n\nRegards,\nPaul\n\n"
        "-- \nPaul Smith\n\n"
        "> On 23 Nov 2026, at 10:02, Mary <mary@example.com> wrote:\n>\n"
        "> Hello,\n> My card is blocked.\n",
        "Hi Mary,\n\nDone, the card is unblocked.\n\nRegards,\nPaul",
    ),
    (
        "thunderbird-fr",
        "Bonjour,\n\nVotre dossier a été transmis au médiateur.\n\nCordialement,\nPaul\n\n"
        "-- \nPaul Durand\nService réclamations\n\n"
        "Le 23/11/2026 à 10:02, Marie a écrit :\n"
        "> Bonjour,\n> Je souhaite saisir le médiateur.\n",
        "Bonjour,\n\nVotre dossier a été transmis au médiateur.\n\nCordialement,\nPaul",
    ),
    (
        "thunderbird-en",
        "Hello,\n\nYour complaint has been registered.\n\nRegards,\nPaul\n\n"
        "-- \nPaul Smith\n\n"
        "On 23/11/2026 10:02, Mary Martin wrote:\n"
        "> Hello,\n> I want to file a complaint.\n",
        "Hello,\n\nYour complaint has been registered.\n\nRegards,\nPaul",
    ),
    (
        "iphone-fr",
        "D'accord, je m'en occupe dès demain.\n\nPaul\n\nEnvoyé de mon iPhone\n\n"
        "> Le 23 nov. 2026 à 10:02, Marie <m@x.fr> a écrit :\n>\n"
        "> \ufeffBonjour, pouvez-vous me rappeler ?\n",
        "D'accord, je m'en occupe dès demain.\n\nPaul",
    ),
    (
        "iphone-en",
        "Sure, I will call you tomorrow.\n\nPaul\n\nSent from my iPhone\n\n"
        "On Nov 23, 2026, at 10:02 AM, Mary <mary@example.com> wrote:\n\n"
        "> Hello, can you call me back?\n",
        "Sure, I will call you tomorrow.\n\nPaul",
    ),
    (
        "thunderbird-en-bottom-post",
        "On 23/11/2026 10:02, Mary Martin wrote:\n"
        "> Hello,\n> Has the refund been issued?\n\n"
        "Yes, it was issued this morning.\n\nRegards,\nPaul\n"
        "-- \nPaul Smith\n",
        "Yes, it was issued this morning.\n\nRegards,\nPaul",
    ),
    (
        "inline-fr",
        "Bonjour Marie,\n\n"
        "> Quand serai-je remboursée ?\n\nSous 3 jours ouvrés.\n\n"
        "> Et les frais ?\n\nIls sont annulés.\n\nCordialement,\nPaul\n\n"
        "-- \nPaul Durand\n",
        "Bonjour Marie,\n\nSous 3 jours ouvrés.\n\nIls sont annulés.\n\nCordialement,\nPaul",
    ),
    (
        "outlook-ios-fr",
        "Je regarde et je reviens vers vous.\n\nPaul\n\n"
        "Obtenir Outlook pour iOS<https://aka.ms/o0ukef>\n"
        "________________________________\n"
        "De : Marie <m@x.fr>\nEnvoyé : lundi, novembre 23, 2026 10:02 AM\n"
        "À : Service clients\nObjet : Réclamation\n\nBonjour\n",
        "Je regarde et je reviens vers vous.\n\nPaul",
    ),
    (
        "outlook-mac-en",
        "Hi Mary,\n\nThe case is now closed.\n\nKind regards,\nPaul\n\n"
        "-- \nPaul Smith\n\n"
        "From: Mary Martin <mary@example.com>\n"
        "Date: Monday, 23 November 2026 at 10:02\n"
        "To: Support <support@example.com>\n"
        "Subject: Re: Complaint\n\nHello\n",
        "Hi Mary,\n\nThe case is now closed.\n\nKind regards,\nPaul",
    ),
]


def test_own_replies_rate() -> None:
    hits = [strip_reply(raw) == expected for _, raw, expected in OWN_REPLIES]
    rate = sum(hits) / len(hits)
    print(f"own replies: {sum(hits)}/{len(hits)} = {rate:.1%}")
    assert len(OWN_REPLIES) >= 16
    assert rate >= 0.9


@pytest.mark.parametrize(("name", "raw", "expected"), OWN_REPLIES, ids=[r[0] for r in OWN_REPLIES])
def test_own_reply(name: str, raw: str, expected: str) -> None:
    assert strip_reply(raw) == expected


HTML_REPLIES: list[tuple[str, str, str]] = [
    (
        "outlook-divRplyFwdMsg",
        "<html><body><div>Bonjour Marie,</div><div><br></div><div>C'est fait.</div>"
        "<div>Cordialement,<br>Paul</div><hr style='display:inline-block'>"
        '<div id="divRplyFwdMsg" dir="ltr"><b>De :</b> Marie &lt;m@x.fr&gt;<br>'
        "<b>Envoyé :</b> lundi 23 novembre 2026 10:02<br><b>À :</b> support@x.fr<br>"
        "<b>Objet :</b> Frais</div><div>Bonjour, et mes frais ?</div></body></html>",
        "Bonjour Marie,\n\nC'est fait.\n\nCordialement,\nPaul",
    ),
    (
        "gmail-fr-html",
        '<div dir="ltr">Bonjour,<div>Dossier transmis.</div><div>Paul</div></div><br>'
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">Le lun. 23 nov. 2026'
        ' à 10:02, Marie &lt;<a href="mailto:m@x.fr">m@x.fr</a>&gt; a écrit :<br></div>'
        '<blockquote class="gmail_quote">Bonjour</blockquote></div>',
        "Bonjour,\nDossier transmis.\nPaul",
    ),
    (
        "thunderbird-html-sig",
        "<html><body><p>Bonjour,</p><p>Réglé.</p><p>Paul</p>"
        '<pre class="moz-signature" cols="72">-- \nPaul Durand</pre>'
        '<div class="moz-cite-prefix">Le 23/11/2026 à 10:02, Marie a écrit&nbsp;:<br></div>'
        '<blockquote type="cite">Bonjour</blockquote></body></html>',
        "Bonjour,\n\nRéglé.\n\nPaul",
    ),
    (
        "gmail-en-html-signature",
        '<div dir="ltr"><div>Hi Mary,</div><div>Refund issued.</div><div>Regards,<br>Paul</div>'
        '<br clear="all"><div><br></div><span class="gmail_signature_prefix">-- </span><br>'
        '<div dir="ltr" class="gmail_signature">Paul Smith | Care</div></div><br>'
        '<div class="gmail_quote"><div class="gmail_attr">On Mon, Nov 23, 2026 at 10:02 AM'
        " Mary &lt;mary@example.com&gt; wrote:<br></div><blockquote>Hello</blockquote></div>",
        "Hi Mary,\nRefund issued.\nRegards,\nPaul",
    ),
]


@pytest.mark.parametrize(
    ("name", "html", "expected"), HTML_REPLIES, ids=[r[0] for r in HTML_REPLIES]
)
def test_html_reply(name: str, html: str, expected: str) -> None:
    # blank lines between blocks are mailbot.mail.htmltext's business: compare loosely
    assert _norm(strip_reply("", html)) == _norm(expected)
    assert _norm(strip_reply("  \n", html)) == _norm(expected)


def test_plain_text_wins_over_html() -> None:
    assert strip_reply("Plain\n\n> old", "<p>Html</p>") == "Plain"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("\n\n  \n", ""),
        ("Hello", "Hello"),
        ("\n\nHello\n\n\n", "Hello"),
        ("Cordialement,\nMarie", "Cordialement,\nMarie"),
        (
            "Merci.\n\nCordialement,\nPaul\n-- \nPaul Durand\nTél. 01 02",
            "Merci.\n\nCordialement,\nPaul",
        ),
        # "--" without the space: a signature only when short
        ("A\n--\nPaul", "A"),
        ("A\n--\n" + "line\n" * 20, "A\n--\n" + "\n".join(["line"] * 20)),
        # prose that merely mentions writing is not an attribution
        (
            "On Monday you wrote: please call.\nI will.",
            "On Monday you wrote: please call.\nI will.",
        ),
        ("Le client a écrit :\nje conteste.", "Le client a écrit :\nje conteste."),
        # a lone "From:" line is not a header block
        (
            "From: the accounting team\nWe reviewed it.",
            "From: the accounting team\nWe reviewed it.",
        ),
        ("> everything quoted\n> here", ""),
        # prose that looks like a mobile signature is kept
        (
            "Sent from my office, the letter should arrive tomorrow.\nPaul",
            "Sent from my office, the letter should arrive tomorrow.\nPaul",
        ),
        (
            "Hello\nSent via registered mail\nTracking: 1\nArrives: Monday\nSigned: yes\nThanks",
            "Hello\nSent via registered mail\nTracking: 1\nArrives: Monday\nSigned: yes\nThanks",
        ),
        ("Merci\n\nEnvoyé de mon iPad\n", "Merci"),
        ("Danke\n\nVon meinem iPhone gesendet", "Danke"),
        # a line with a date, a time and an address is not an attribution by itself
        (
            "Call on 23/11/26 at 10:00 with bob@example.com:\n- check the fees",
            "Call on 23/11/26 at 10:00 with bob@example.com:\n- check the fees",
        ),
        (
            "Hallo,\n\nErledigt.\n\nVon: Maria <m@x.de>\nGesendet: Montag, 23. November 2026\n"
            "An: support@x.de\nBetreff: Gebühren\n\nHallo",
            "Hallo,\n\nErledigt.",
        ),
        ('Готово.\n\n23.11.2026, 10:02, "Мария" <m@x.ru>:\n> Здравствуйте', "Готово."),
        ("Готово.\n\nПн, 23 ноя 2026 10:02 от Мария <m@x.ru>:\n\nЗдравствуйте", "Готово."),
        (
            "Готово.\n\nОт: Мария <m@x.ru>\nОтправлено: 23 ноября 2026 г. 10:02\nКому: a@b.ru\n"
            "Тема: Жалоба",
            "Готово.",
        ),
    ],
)
def test_edge_cases(raw: str, expected: str) -> None:
    assert strip_reply(raw) == expected


# --- split_commands -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "commands", "rest"),
    [
        ("#note\nCalled the customer.", ["#note"], "Called the customer."),
        ("#close", ["#close"], ""),
        ("", [], ""),
        ("Just an answer.", [], "Just an answer."),
        (
            "#final at 2026-12-01T09:00\n#tier complex\n\nVotre dossier est clos.",
            ["#final at 2026-12-01T09:00", "#tier complex"],
            "Votre dossier est clos.",
        ),
        (
            "\n\n  #extend 10 analyse auprès du partenaire  \n#priority urgent\nTexte",
            ["#extend 10 analyse auprès du partenaire", "#priority urgent"],
            "Texte",
        ),
        (
            "#category frais\n#assign agent@x\n#ask\nPouvez-vous préciser ?",
            ["#category frais", "#assign agent@x", "#ask"],
            "Pouvez-vous préciser ?",
        ),
        # '#' lines after text are not commands
        ("Bonjour,\n#close\nMerci", [], "Bonjour,\n#close\nMerci"),
        ("Hello\n\n#final", [], "Hello\n\n#final"),
        # a '#close' in the middle of prose is not a command
        (
            "Le client écrit « merci de #close mon dossier ».\n#close",
            [],
            "Le client écrit « merci de #close mon dossier ».\n#close",
        ),
        # a blank line ends the command block
        ("#note\n\n#close\nTexte", ["#note"], "#close\nTexte"),
        # '#' followed by a number or a space is not a command
        ("#1 priorité : le remboursement", [], "#1 priorité : le remboursement"),
        ("# titre\nTexte", [], "# titre\nTexte"),
        ("#note\r\nAppel passé\r\n", ["#note"], "Appel passé"),
    ],
)
def test_split_commands(text: str, commands: list[str], rest: str) -> None:
    assert split_commands(text) == (commands, rest)


def test_commands_after_stripping() -> None:
    reply = (
        "#note\n#priority urgent\nClient rappelé, geste accordé.\n\nPaul\n\n"
        "Le lun. 23 nov. 2026 à 10:02, Marie <m@x.fr> a écrit :\n> #close\n"
    )
    assert split_commands(strip_reply(reply)) == (
        ["#note", "#priority urgent"],
        "Client rappelé, geste accordé.\n\nPaul",
    )


# --- robustness ---------------------------------------------------------------------

_MAILISH = st.lists(
    st.sampled_from(
        list("ab :>-_*#@\n\r\t\u00a0\u202f<>2:0")
        + [
            "On ",
            "Le ",
            " wrote:",
            " a écrit :",
            "From: x",
            "Sent: y",
            "To: z",
            "Subject: s",
            "De : x",
            "Envoyé : y",
            "-- \n",
            "\n> ",
            "Sent from my iPhone",
            "12:30",
            "2026",
            "-----Original Message-----",
            "_" * 32,
            "<blockquote>",
            "<div class=gmail_quote>",
        ]
    ),  # fmt: skip
    max_size=60,
).map("".join)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(text=_MAILISH | st.text(max_size=300))
def test_strip_reply_never_raises_nor_grows(text: str) -> None:
    out = strip_reply(text)
    assert isinstance(out, str)
    assert len(out) <= len(text)


@settings(max_examples=150, deadline=None)
@given(html=_MAILISH | st.text(max_size=300))
def test_strip_reply_html_never_raises(html: str) -> None:
    assert isinstance(strip_reply("", html), str)


@settings(max_examples=200, deadline=None)
@given(text=_MAILISH)
def test_split_commands_never_raises(text: str) -> None:
    commands, rest = split_commands(text)
    assert all(c.startswith("#") for c in commands)
    assert len(rest) <= len(text)


@pytest.mark.slow
@pytest.mark.parametrize(
    "chunk",
    [
        " " * 1000 + "\n",
        "On a wrote wrote 10:00 2026 @ " * 10 + ":\n",
        "12:30 @ написал от " * 20 + ":\n",
        "From: a\n",
        "De : a\nÀ : b\n",
        "> quoted\n",
        "--\n",
        "*" * 500 + "\n",
        "a" * 5000 + ":\n",
    ],
)
def test_linear_on_large_inputs(chunk: str) -> None:
    text = chunk * (2 * MAX_CHARS // len(chunk))
    started = time.perf_counter()
    out = strip_reply(text)
    strip_reply("", "<div>" + text + "</div>")
    split_commands(text)
    assert len(out) <= MAX_CHARS
    assert time.perf_counter() - started < 15


def test_html_fallback_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without mailbot.mail.htmltext the stdlib fallback gives the same talon results."""
    from mailbot.mail import quotes

    monkeypatch.setattr(quotes, "_load_html_to_text", lambda: quotes._fallback_html_to_text)
    rows = [row for row in _talon_rows() if row["compare"].startswith("html")]
    for row in rows:
        expected = _norm(row["expected_reply"].replace("\\n", "\n"))
        assert _norm(_talon_reply(row)) == expected, row["file"]
    assert quotes._fallback_html_to_text("<style>p{}</style><p>a&amp;b</p><script>x") == "a&b"
