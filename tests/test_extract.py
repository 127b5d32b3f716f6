"""Extraction, masking and HTML-to-text: tables of realistic complaint mails."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.mail import extract as _x
from mailbot.mail import masking as _m
from mailbot.mail.extract import Amount, Extracted, detect_language, extract, extract_phone
from mailbot.mail.htmltext import html_to_text
from mailbot.mail.masking import (
    find_cards,
    find_ibans,
    luhn_ok,
    mask_card,
    mask_iban,
    mask_sensitive,
)

PARIS = timezone(timedelta(hours=1))
SENT = datetime(2026, 11, 5, 9, 30, tzinfo=PARIS)  # a Thursday

CATEGORIES: list[tuple[str, list[str]]] = [
    ("fraude", ["fraude", "frauduleux", "frauduleuse", "fraud", "fraudulent"]),
    ("transaction", ["virement", "paiement", "prélèvement", "transfer", "payment", "direct debit"]),
    ("compte", ["compte bloqué", "carte bloquée", "connexion", "espace client", "login", "card blocked"]),
    ("frais", ["frais", "commission", "agios", "fees", "charges"]),
    ("projet", ["projet", "project", "dividendes", "dividends", "remboursement", "repayment"]),
    ("technique", ["bug", "plateforme", "platform"]),
]
URGENT = [
    "fraude", "frauduleux", "frauduleuse", "opération non reconnue", "opérations non reconnues",
    "accès non autorisé", "piratage", "usurpation", "fraud", "fraudulent",
    "unrecognised transaction", "unrecognized transaction", "unauthorised access", "identity theft",
]  # fmt: skip


@dataclass(frozen=True)
class Mail:
    """One complaint mail and the fields ``extract`` must return for it."""

    id: str
    text: str
    expected: dict[str, Any]
    subject: str = ""
    display_name: str | None = None
    from_addr: str | None = None
    attachments: int = 0
    sent_at: datetime = SENT
    extra: dict[str, Any] = field(default_factory=dict)


def eur(value: str) -> Amount:
    return Amount(value, "EUR")


MAILS: list[Mail] = [
    # ------------------------------------------------------------------ French, bank
    Mail(
        "fr-virement-complet",
        """Bonjour,

Je m'appelle Jean Dupont, numéro client 12345678. Le 3 novembre 2026, j'ai émis un virement
de 1 250,00 € (réf. VIR-2026-11-0042) vers mon compte FR76 3000 6000 0112 3456 7890 189,
il n'est jamais arrivé. Hier encore, rien.

Tél : 06 12 34 56 78
12 rue des Lilas, 75011 Paris

Cordialement,
Jean Dupont
""",
        {
            "name": "Jean Dupont",
            "email": "jean.dupont@example.fr",
            "phone": "+33 6 12 34 56 78",
            "postal_address": "12 rue des Lilas, 75011 Paris",
            "customer_number": "12345678",
            "ibans": ("FR76 **** **** **** **** **** 189",),
            "fact_dates": ("2026-11-03", "2026-11-04"),
            "amounts": (eur("1250.00"),),
            "operation_types": ("virement",),
            "references": ("VIR-2026-11-0042",),
            "category": "transaction",
            "urgent": False,
            "language": "fr",
            "missing": ("pieces_jointes",),
        },
        subject="Virement non reçu",
        from_addr="jean.dupont@example.fr",
    ),
    Mail(
        "fr-prelevement-non-autorise",
        """Madame, Monsieur,

Nom : Marie Curie-Martin
Client n° 98765432

Un prélèvement PRLV-SEPA-884211 de 49,99 € a été débité le 02/11/2026 alors que je ne l'ai
jamais autorisé. C'est une opération non reconnue, merci de me rembourser.
Vous pouvez me joindre au +33 1 45 67 89 10.
""",
        {
            "name": "Marie Curie-Martin",
            "customer_number": "98765432",
            "phone": "+33 1 45 67 89 10",
            "fact_dates": ("2026-11-02",),
            "amounts": (eur("49.99"),),
            "operation_types": ("prelevement", "remboursement"),
            "references": ("PRLV-SEPA-884211",),
            "category": "transaction",
            "urgent": True,
            "urgent_matches": ("opération non reconnue",),
            "missing": (),
        },
        subject="Prélèvement non autorisé",
        attachments=1,
    ),
    Mail(
        "fr-frais-date-courte",
        """Bonjour,
Sur mon relevé du 3/11/26 je vois des agios et des frais de tenue de compte de 8 € que je
conteste. Mon identifiant : KP-4455102.
Merci de me répondre.
""",
        {
            "customer_number": "KP-4455102",
            "fact_dates": ("2026-11-03",),
            "amounts": (eur("8.00"),),
            "operation_types": ("frais",),
            "references": (),
            "category": "frais",
            "missing": ("references", "pieces_jointes"),
        },
        subject="Contestation de frais",
    ),
    Mail(
        "fr-carte-bloquee-retrait",
        """Bonjour,

Ma carte bloquée depuis ce matin : impossible de faire un retrait de 200 EUR au distributeur.
La carte concernée est la 4970 1012 3456 7893.

Bien à vous,
Paul Durand
06.98.76.54.32
""",
        {
            "name": "DURAND Paul",
            "phone": "+33 6 98 76 54 32",
            "cards": ("**** **** **** 7893",),
            "fact_dates": ("2026-11-05",),
            "amounts": (eur("200.00"),),
            "operation_types": ("carte", "retrait"),
            "category": "compte",
            "urgent": False,
            "missing": ("references", "pieces_jointes"),
        },
        display_name="DURAND Paul",
    ),
    Mail(
        "fr-fraude-paiements",
        """Bonjour,
Je constate des opérations non reconnues sur mon compte depuis le 1er novembre : plusieurs
paiements par carte pour un total de 1.250,00 EUR. C'est une fraude, je n'ai jamais fait ces
achats. Numéro de compte : 00012345678.
Adresse : 8 avenue Jean Jaurès, 69007 Lyon
""",
        {
            "account_number": "00012345678",
            "postal_address": "8 avenue Jean Jaurès, 69007 Lyon",
            "fact_dates": ("2026-11-01",),
            "amounts": (eur("1250.00"),),
            "operation_types": ("paiement", "carte"),
            "category": "fraude",
            "urgent": True,
            "urgent_matches": ("fraude", "opérations non reconnues"),
            "phone": None,
            "missing": ("references", "pieces_jointes"),
        },
        subject="URGENT fraude",
    ),
    Mail(
        "fr-cheque-encaisse-deux-fois",
        """Bonjour,
Mon chèque n° 1234567 de 150,00 € a été encaissé deux fois, le 28 octobre et le 30 octobre.
Merci de corriger.
Cordialement
Sophie Martin
07 11 22 33 44
""",
        {
            "name": "Sophie Martin",
            "phone": "+33 7 11 22 33 44",
            "fact_dates": ("2026-10-28", "2026-10-30"),
            "amounts": (eur("150.00"),),
            "operation_types": ("cheque",),
            "references": ("cheque 1234567",),
            "missing": ("pieces_jointes",),
        },
    ),
    Mail(
        "fr-paiement-double-iso",
        """Bonjour,
Le paiement TX123456789 de 45,00 € du 2026-11-02 a été débité deux fois.
Je vous joins le relevé.

Cordialement,
Lucie Bernard
5 bis avenue Victor Hugo
69002 Lyon
""",
        {
            "name": "Lucie Bernard",
            "postal_address": "5 bis avenue Victor Hugo, 69002 Lyon",
            "fact_dates": ("2026-11-02",),
            "amounts": (eur("45.00"),),
            "operation_types": ("paiement",),
            "references": ("TX123456789",),
            "missing": (),
        },
        attachments=1,
    ),
    Mail(
        "fr-virement-instantane-abrege",
        """Bonjour, mon virement instantané VIR-INST-77881 de 12,50 EUR du 3 nov. 2026 n'est pas
parvenu à son bénéficiaire. Numéro de client : 55512345. Merci.""",
        {
            "customer_number": "55512345",
            "fact_dates": ("2026-11-03",),
            "amounts": (eur("12.50"),),
            "operation_types": ("virement",),
            "references": ("VIR-INST-77881",),
            "missing": ("pieces_jointes",),
        },
    ),
    Mail(
        "fr-usurpation-telephone-international",
        """Bonjour,
Je suis victime d'une usurpation d'identité : un accès non autorisé à mon espace client a eu
lieu avant-hier. Rappelez-moi au +33 (0)6 11 22 33 44.
""",
        {
            "phone": "+33 6 11 22 33 44",
            "fact_dates": ("2026-11-03",),
            "urgent": True,
            "urgent_matches": ("accès non autorisé", "usurpation"),
            "category": "compte",
            "operation_types": (),
            "missing": ("type_operation", "montant", "references", "pieces_jointes"),
        },
        subject="Accès non autorisé",
    ),
    Mail(
        "fr-minimal",
        "Bonjour, j'ai un souci. Merci de me rappeler.",
        {
            "name": None,
            "email": "x@example.org",
            "phone": None,
            "postal_address": None,
            "customer_number": None,
            "account_number": None,
            "ibans": (),
            "cards": (),
            "fact_dates": (),
            "amounts": (),
            "operation_types": (),
            "references": (),
            "category": "autre",
            "urgent": False,
            "urgent_matches": (),
            "language": "fr",
            "missing": (
                "coordonnees", "date_faits", "type_operation", "montant", "references",
                "pieces_jointes",
            ),
        },
        from_addr="x@example.org",
    ),
    Mail(
        "fr-espaces-insecables",
        "Bonjour, le 4 novembre un virement de 1\u202f250,00\u00a0€ puis un autre de 2\u00a0000 € "
        "ont été rejetés. Dossier 2026/1234.",
        {
            "amounts": (eur("1250.00"), eur("2000.00")),
            "fact_dates": ("2026-11-04",),
            "references": ("dossier 2026/1234",),
        },
    ),
    Mail(
        "fr-iban-compact-et-etranger",
        """Bonjour,
Mon virement de FR7630006000011234567890189 vers DE89 3704 0044 0532 0130 00 est bloqué
depuis lundi dernier.
Numéro de compte : FR76 3000 6000 0112 3456 7890 189
""",
        {
            "ibans": ("FR76********************189", "DE89 **** **** **** ***0 00"),
            "account_number": "FR76 **** **** **** **** **** 189",
            "fact_dates": ("2026-11-02",),
            "operation_types": ("virement",),
        },
    ),
    Mail(
        "fr-commission-annee-precedente",
        """Bonjour,
Une commission d'intervention de 8,00 € m'a été prélevée le 1er décembre, puis le
mercredi dernier encore une fois. Je demande le remboursement.""",
        {
            "fact_dates": ("2025-12-01", "2026-11-04"),
            "amounts": (eur("8.00"),),
            "operation_types": ("frais", "remboursement"),
            "category": "frais",
        },
    ),
    Mail(
        "fr-chf",
        """Bonjour, le virement de 250,00 CHF effectué aujourd'hui depuis Genève n'apparaît pas.
Référence : 2026110512.""",
        {
            "amounts": (Amount("250.00", "CHF"),),
            "fact_dates": ("2026-11-05",),
            "references": ("2026110512",),
            "language": "fr",
        },
    ),
    Mail(
        "fr-signature-tiret",
        """Bonjour,
Pourquoi ma carte a-t-elle été refusée hier pour un paiement de 50€ ?
--
Camille Leroy
""",
        {
            "name": "Camille Leroy",
            "fact_dates": ("2026-11-04",),
            "amounts": (eur("50.00"),),
            "operation_types": ("paiement", "carte"),
            "missing": ("coordonnees", "references", "pieces_jointes"),
        },
    ),
    # ------------------------------------------------------------------ French, crowdfunding
    Mail(
        "fr-crowdfunding-remboursement",
        """Bonjour,
J'ai investi 5 000 € dans le projet Résidence Les Palmiers. Le remboursement prévu le
15 septembre 2026 n'a toujours pas eu lieu. Mon dossier n° 2026/0457.

Cordialement,
Hélène Petit
""",
        {
            "name": "Hélène Petit",
            "fact_dates": ("2026-09-15",),
            "amounts": (eur("5000.00"),),
            "operation_types": ("remboursement", "investissement"),
            "references": ("dossier 2026/0457",),
            "category": "projet",
        },
        subject="Remboursement projet en retard",
    ),
    Mail(
        "fr-crowdfunding-dividendes",
        """Bonjour,
Les dividendes du projet Hôtel Marigot n'ont pas été versés avant-hier comme annoncé.
Montant attendu : 312,40 €. Identifiant : DK-204518.
""",
        {
            "customer_number": "DK-204518",
            "references": (),
            "fact_dates": ("2026-11-03",),
            "amounts": (eur("312.40"),),
            "operation_types": ("investissement",),
            "category": "projet",
        },
    ),
    Mail(
        "fr-crowdfunding-bug",
        """Bonjour,
Depuis lundi dernier la plateforme affiche une page blanche (bug ?) et je ne peux plus
investir. Je m'appelle Nadia Benali, tél. 07.98.76.54.32.
""",
        {
            "name": "Nadia Benali",
            "phone": "+33 7 98 76 54 32",
            "fact_dates": ("2026-11-02",),
            "operation_types": ("investissement",),
            "category": "technique",
            "missing": ("montant", "references", "pieces_jointes"),
        },
        attachments=0,
    ),
    Mail(
        "fr-crowdfunding-souscription",
        """Bonjour,
Ma souscription de 2 500 € au projet Solaire Sud (INV-2026-0099) du 12 octobre 2026 n'apparaît
pas dans mon espace. Adresse : 14 rue Anegada, 97150 Saint-Martin.
""",
        {
            "postal_address": "14 rue Anegada, 97150 Saint-Martin",
            "fact_dates": ("2026-10-12",),
            "amounts": (eur("2500.00"),),
            "operation_types": ("investissement",),
            "references": ("INV-2026-0099",),
            "category": "projet",
            "missing": ("pieces_jointes",),
        },
    ),
    Mail(
        "fr-piratage-display-name-email",
        """Bonjour,
Mon compte a subi un piratage, un virement de 980,00 € a été émis le 04.11.2026 vers un
inconnu. Client n° 44556677.
""",
        {
            "name": "Anne Moreau",
            "email": "anne.moreau@example.com",
            "customer_number": "44556677",
            "fact_dates": ("2026-11-04",),
            "urgent": True,
            "urgent_matches": ("piratage",),
            "missing": ("references", "pieces_jointes"),
        },
        display_name='"Anne Moreau"',
        from_addr="anne.moreau@example.com",
    ),
    # ------------------------------------------------------------------ English
    Mail(
        "en-transfer",
        """Dear Sir or Madam,

My name is John Smith, customer number 87654321. On November 3, 2026 I made a transfer of
€1,250.00 (ref TRF-2026-5531) and it has not been received. Please call me on +44 20 7946 0958.

Best regards,
John Smith
""",
        {
            "name": "John Smith",
            "customer_number": "87654321",
            "phone": "+44 20 7946 0958",
            "fact_dates": ("2026-11-03",),
            "amounts": (eur("1250.00"),),
            "operation_types": ("virement",),
            "references": ("TRF-2026-5531",),
            "category": "transaction",
            "language": "en",
            "missing": ("pieces_jointes",),
        },
    ),
    Mail(
        "en-direct-debit",
        """Hello,
There is an unrecognised transaction on my account: a direct debit of £15 taken on
3rd November 2026 that I never set up. I would like a refund.
""",
        {
            "fact_dates": ("2026-11-03",),
            "amounts": (Amount("15.00", "GBP"),),
            "operation_types": ("prelevement", "remboursement"),
            "urgent": True,
            "urgent_matches": ("unrecognised transaction",),
            "category": "transaction",
            "language": "en",
        },
    ),
    Mail(
        "en-card-fraud",
        """Hi,
Yesterday I noticed fraudulent payments with my card 5555 5555 5555 4444: $30 and then
USD 1,200.00. Please block it. My customer ID: 99001122.
""",
        {
            "cards": ("**** **** **** 4444",),
            "customer_number": "99001122",
            "fact_dates": ("2026-11-04",),
            "amounts": (Amount("30.00", "USD"), Amount("1200.00", "USD")),
            "operation_types": ("paiement", "carte"),
            "urgent": True,
            "urgent_matches": ("fraudulent",),
            "category": "fraude",
            "language": "en",
        },
    ),
    Mail(
        "en-fees-uk-address",
        """Dear team,
I was charged fees of 25.00 GBP on 2026-10-30 for no reason, please explain these charges.

Kind regards,
Emily Watson
221B Baker Street, London NW1 6XE
""",
        {
            "name": "Emily Watson",
            "postal_address": "221B Baker Street, London NW1 6XE",
            "fact_dates": ("2026-10-30",),
            "amounts": (Amount("25.00", "GBP"),),
            "operation_types": ("frais",),
            "category": "frais",
            "language": "en",
            "missing": ("references", "pieces_jointes"),
        },
    ),
    Mail(
        "en-crowdfunding-dividends",
        """Hello,
The dividends of the Green Valley project were due last Monday and I have not been paid.
I invested 12.50 euros per share. Customer ID: DV-55120.
""",
        {
            "customer_number": "DV-55120",
            "references": (),
            "fact_dates": ("2026-11-02",),
            "amounts": (eur("12.50"),),
            "operation_types": ("investissement",),
            "category": "projet",
            "language": "en",
        },
    ),
    Mail(
        "en-platform-bug",
        """Hello,
Since today the platform shows an error when I try to log in. This is the third time this
month. Thanks for your help.
""",
        {
            "fact_dates": ("2026-11-05",),
            "category": "technique",
            "language": "en",
            "missing": ("coordonnees", "type_operation", "montant", "references"),
        },
        attachments=2,
    ),
    Mail(
        "en-refund-order",
        """Dear support,
I am still waiting for the refund of 99.99 USD for order number 4455667, cancelled on
3 Nov 2026. Account number: 12345678.
""",
        {
            "account_number": "12345678",
            "fact_dates": ("2026-11-03",),
            "amounts": (Amount("99.99", "USD"),),
            "operation_types": ("remboursement",),
            "references": ("4455667",),
            "language": "en",
        },
    ),
    Mail(
        "en-atm-withdrawal",
        """Hello,
The ATM did not dispense the £200 of my withdrawal on 02/11/2026 but my account was debited.
Address: 10 Downing Street, London SW1A 2AA
""",
        {
            "postal_address": "10 Downing Street, London SW1A 2AA",
            "fact_dates": ("2026-11-02",),
            "amounts": (Amount("200.00", "GBP"),),
            "operation_types": ("retrait",),
            "language": "en",
            "missing": ("references", "pieces_jointes"),
        },
    ),
    Mail(
        "en-us-cheque",
        """Hello,
My cheque of $1,200.00 deposited on November 2 has not been credited and yesterday I was
told to wait again. Mail: 1600 Pennsylvania Avenue, Washington DC 20500.
""",
        {
            "postal_address": "1600 Pennsylvania Avenue, Washington DC 20500",
            "fact_dates": ("2026-11-02", "2026-11-04"),
            "amounts": (Amount("1200.00", "USD"),),
            "operation_types": ("cheque",),
            "language": "en",
        },
    ),
    Mail(
        "en-identity-theft-uk-mobile",
        """Dear Sir,
I am a victim of identity theft: someone opened a credit card in my name this morning.
Please contact me urgently on +44 7700 900123.

Yours sincerely,
Oliver Brown
""",
        {
            "name": "Oliver Brown",
            "phone": "+44 7700 900123",
            "fact_dates": ("2026-11-05",),
            "operation_types": ("carte",),
            "urgent": True,
            "urgent_matches": ("identity theft",),
            "language": "en",
        },
    ),
    Mail(
        "en-date-without-year-rolls-back",
        """Hello, the payment of €80 made on December 20 was charged twice. Thanks.""",
        {
            "fact_dates": ("2025-12-20",),
            "amounts": (eur("80.00"),),
            "operation_types": ("paiement",),
            "language": "en",
        },
    ),
]


def run(mail: Mail) -> Extracted:
    return extract(
        mail.text,
        subject=mail.subject,
        sent_at=mail.sent_at,
        display_name=mail.display_name,
        from_addr=mail.from_addr,
        categories=CATEGORIES,
        default_category="autre",
        urgent_keywords=URGENT,
        attachment_count=mail.attachments,
    )


@pytest.mark.parametrize("mail", MAILS, ids=[m.id for m in MAILS])
def test_extract_mail(mail: Mail) -> None:
    result = run(mail)
    actual = {key: getattr(result, key) for key in mail.expected}
    assert actual == mail.expected


def test_table_covers_every_field() -> None:
    covered = {key for mail in MAILS for key, value in mail.expected.items() if value}
    fields = set(Extracted.__dataclass_fields__) - {"urgent"}
    assert fields <= covered
    assert len(MAILS) >= 30


@pytest.mark.parametrize("mail", MAILS, ids=[m.id for m in MAILS])
def test_no_clear_bank_number_in_result(mail: Mail) -> None:
    dumped = json.dumps(run(mail).to_json(), ensure_ascii=False)
    for secret in ("3000 6000 0112", "30006000011234", "1012 3456", "5555 5555", "3704 0044"):
        assert secret not in dumped


def test_to_json_shape() -> None:
    data = run(MAILS[0]).to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["amounts"] == [{"value": "1250.00", "currency": "EUR"}]
    assert data["missing"] == ["pieces_jointes"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Bonjour, je n'ai pas reçu mon virement.", "fr"),
        ("Hello, I have not received my transfer, please help.", "en"),
        ("", "fr"),
        ("12345 !!!", "fr"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_naive_datetime_and_empty_config() -> None:
    result = extract("hier", sent_at=datetime(2026, 3, 1, 12, 0))
    assert result.fact_dates == ("2026-02-28",)
    assert result.category is None


@pytest.mark.parametrize(
    ("text", "field_name", "value"),
    [
        ("My account number is 12345678.", "account_number", "12345678"),
        ("Customer number is 87654321.", "customer_number", "87654321"),
        ("Nom : DUPONT jean\nMerci", "name", "DUPONT jean"),
        ("I may 3 times have asked.", "fact_dates", ()),
        ("Délai de 15 jours, voir page 3.", "amounts", ()),
        ("Appelez le 0033 6 12 34 56 78", "phone", "+33 6 12 34 56 78"),
        ("Le 03.11.2026 puis le 06.12.34.56.78", "fact_dates", ("2026-11-03",)),
        ("numéro de compte : FR7630006000011234567890189 merci", "account_number",
         "FR76********************189"),
    ],
)
def test_single_field(text: str, field_name: str, value: object) -> None:
    assert getattr(extract(text, sent_at=SENT), field_name) == value


@pytest.mark.parametrize(
    "text",
    ["31/02/2026", "le 30 février 2026", "2026-13-01", "00/00/0000", "le 32 mai"],
)
def test_impossible_dates_are_ignored(text: str) -> None:
    assert extract(text, sent_at=SENT).fact_dates == ()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 250,00 €", "1250.00"),
        ("1.250,00 EUR", "1250.00"),
        ("12,50 EUR", "12.50"),
        ("€12.50", "12.50"),
        ("12.50 euros", "12.50"),
        ("50€", "50.00"),
        ("1\u00a0250,00 €", "1250.00"),
        ("1\u202f250 €", "1250.00"),
    ],
)
def test_euro_amount_forms(text: str, value: str) -> None:
    assert extract(f"Montant : {text}.", sent_at=SENT).amounts == (eur(value),)


# --------------------------------------------------------------------------- masking

FR_IBAN = "FR76 3000 6000 0112 3456 7890 189"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (FR_IBAN, "FR76 **** **** **** **** **** 189"),
        ("IBAN:FR7630006000011234567890189.", "IBAN:FR76********************189."),
        ("iban fr76 3000 6000 0112 3456 7890 189 merci", "iban FR76 **** **** **** **** **** 189 merci"),
        ("GB29 NWBK 6016 1331 9268 19", "GB29 **** **** **** ***8 19"),
        ("BE68 5390 0754 7034 !", "BE68 **** **** *034 !"),
        ("carte 4111 1111 1111 1111 exp 12/27", "carte **** **** **** 1111 exp 12/27"),
        ("carte 4111111111111111.", "carte **** **** **** 1111."),
        ("4111-1111-1111-1111", "****-****-****-1111"),
        ("amex 378282246310005", "amex *** **** **** 0005"),
        ("5555 5555 5555 4444 1234", "**** **** **** 4444 1234"),
    ],
)
def test_mask_sensitive_masks(text: str, masked: str) -> None:
    assert mask_sensitive(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "Appelez-moi au 06 12 34 56 78 ou au +33 6 12 34 56 78.",
        "Tel: 0033612345678",
        "Montant : 1 250,00 € et 1.250,00 EUR, USD 1,200.00",
        "Le 03/11/2026, le 2026-11-03, le 3 novembre 2026.",
        "Références VIR-2026-11-0042, PRLV-SEPA-884211, TX123456789, dossier 2026/1234",
        "Numéro client 12345678, compte 12345678901, identifiant 123456789",
        "Carte 4111 1111 1111 1112 (Luhn faux)",
        "FR76 3000 6000 0112 3456 78 (trop court)",
        "SIRET-like 1234 5678 9012 3456 7 mixed groups 12 34 56 78 90 12 34 56",
    ],
)
def test_mask_sensitive_leaves_ordinary_numbers(text: str) -> None:
    assert mask_sensitive(text) == text


def test_mask_helpers() -> None:
    assert mask_iban(FR_IBAN) == "FR76 **** **** **** **** **** 189"
    assert mask_card("4111 1111 1111 1111") == "**** **** **** 1111"
    assert mask_card("4111111111111111") == "**** **** **** 1111"
    text = f"IBAN {FR_IBAN}, carte 4111 1111 1111 1111."
    assert find_ibans(text) == [FR_IBAN]
    assert find_cards(text) == ["4111 1111 1111 1111"]
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


# --------------------------------------------------------------------------- HTML


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Bonjour,</p><p>Mon virement&nbsp;!</p>", "Bonjour,\n\nMon virement !"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<div>un</div><div>deux</div>", "un\n\ndeux"),
        ("<ul><li>un</li><li>deux</li></ul>", "un\n\ndeux"),
        ("<table><tr><td>Date</td><td>3/11</td></tr><tr><td>Montant</td><td>12 €</td></tr></table>",
         "Date 3/11\n\nMontant 12 €"),
        ("<h1>Titre</h1>texte", "Titre\ntexte"),
        ("<html><head><title>T</title><style>p{color:red}</style></head><body>corps</body></html>", "corps"),
        ("<script>alert('x < y')</script>visible", "visible"),
        ('voir <a href="https://example.com/x">le lien</a> ici', "voir le lien ici"),
        ("caf&eacute; &amp; th&#233; &lt;b&gt;", "café & thé <b>"),
        ("<!-- commentaire -->texte", "texte"),
        ("<p>a</p>\n\n\n\n<p>b</p>", "a\n\nb"),
        ("3 < 4 et 5 > 2", "3 < 4 et 5 > 2"),
        ("<a b='<<<", "<a b='<<<"),
        ("<!-- jamais fermé", ""),
        ("", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    "garbage",
    ["<!--" * 20_000, "<a " * 20_000, "<a b='" * 20_000, "<p" * 20_000, "<a\n" * 20_000],
)
def test_html_to_text_is_fast_on_garbage(garbage: str) -> None:
    start = datetime.now()
    html_to_text(garbage)
    assert (datetime.now() - start).total_seconds() < 5


# --------------------------------------------------------------------------- properties


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000), st.text(max_size=100))
def test_extract_never_raises(text: str, subject: str) -> None:
    result = extract(
        text, subject=subject, sent_at=SENT, categories=CATEGORIES, urgent_keywords=URGENT
    )
    json.dumps(result.to_json())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=2000))
def test_mask_sensitive_never_raises(text: str) -> None:
    assert isinstance(mask_sensitive(text), str)


def _luhn_complete(partial: str) -> str:
    """``partial`` (15 digits) plus the Luhn check digit."""
    return next(partial + d for d in "0123456789" if luhn_ok(partial + d))


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    digits = _luhn_complete(draw(st.from_regex(r"\A[0-9]{15}\Z")))
    separator = draw(st.sampled_from(["", " ", "-"]))
    return separator.join(digits[i : i + 4] for i in range(0, 16, 4)) if separator else digits


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), card_numbers(), st.text(max_size=200))
def test_no_card_number_survives(before: str, card: str, after: str) -> None:
    masked = mask_sensitive(f"{before} {card} {after}")
    assert card not in masked
    assert re.sub(r"\D", "", card) not in masked


# --------------------------------------------------------------------------- fast paths
#
# Several patterns and helpers are written for speed (see the comments in extract.py and
# masking.py). Each must give exactly what its plain form gives; the plain forms are
# kept here as the reference.

_B = r"[\w.,/-]"
_PLAIN_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    name: (re.compile(pattern), module)
    for name, pattern, module in [
        ("_DAY_MONTH_RE", rf"(?<!{_B})(\d{{1,2}}){_x._ORD} (?:of )?({_x._MONTH_ALT})\b\.?(?:,? (\d{{4}}))?(?!\d)",
         "extract"),
        ("_MONTH_DAY_RE", rf"\b({_x._MONTH_ALT})\b\.? (\d{{1,2}}){_x._ORD}(?!\d)(?:,? (\d{{4}}))?(?!\d)", "extract"),
        ("_DMY_RE", r"(?<![\w/.-])(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?![\d]|[/.-]\d)", "extract"),
        ("_ISO_RE", r"(?<![\w/.-])(\d{4})-(\d{2})-(\d{2})(?![\w]|[/.-]\d)", "extract"),
        ("_RELATIVE_RE", r"(?<![\w-])(" + "|".join(map(re.escape, sorted(_x._RELATIVE_DAYS, key=len, reverse=True)))
         + r")(?![\w-])", "extract"),
        ("_LAST_WEEKDAY_RE", rf"\b(?:({_x._WEEKDAY_ALT}) dernier|last ({_x._WEEKDAY_ALT}))\b", "extract"),
        ("_SUFFIX_AMOUNT_RE", rf"(?<![\w.,*]){_x._NUMBER} ?({_x._CUR_ALT})(?![a-z])", "extract"),
        ("_PREFIX_AMOUNT_RE", rf"(?<![a-z])(us\$|€|\$|£|usd|eur|gbp|chf) ?{_x._NUMBER}(?![\d])", "extract"),
        ("_CODE_REF_RE", r"(?<![\w/-])(?:[A-Z][A-Z0-9]{1,9}(?:[-/_][A-Z0-9]{1,15}){1,6}|[A-Z]{2,5}\d{5,20})(?![\w/-])",
         "extract"),
        ("_FILE_REF_RE", r"(?<![\w])(dossier|ticket|case|claim|cheque)\s?(?:n[°o]\.?|number|#)?\s?:?\s?(\d[\w/-]{1,30})",
         "extract"),
        ("_LABEL_REF_RE", r"(?<!\w)(?:reference(?! client)|ref\.?|numero d'operation|numero de transaction"
         r"|transaction(?: id| number)?|order(?: number)?|commande)\s?(?:n[°o]\.?|#)?\s?:?\s?([a-z0-9][a-z0-9/_-]{3,30})",
         "extract"),
        ("_FR_PHONE_RE", r"(?<![\w+*.,/-])(?:(?:\+|00) ?33 ?(?:\(0\) ?)?|0)([1-9])((?:[ .-]?\d{2}){4})(?![\d])",
         "extract"),
        ("_INTL_PHONE_RE", r"(?<![\w+])\+(?!33)\d{1,3}(?:(?:[ .-]\d{1,6}){2,6}|\d{6,12})(?!\d)", "extract"),
        ("_FR_ADDRESS_RE", rf"(?<![\w*])(\d{{1,4}}(?: ?(?i:bis|ter))?),? +((?i:{_x._FR_STREET})(?!\w)[^\n,\d]{{0,60}}?)"
         rf" *[,\n]? *(\d{{5}}) +({_x._CITY})", "extract"),
        ("_EN_ADDRESS_RE", rf"(?<![\w*])\d{{1,5}}[A-Z]? (?:[A-Z][a-z]+ ){{1,4}}(?:{_x._EN_STREET})\b\.?,? *\n? *"
         r"[A-Z][a-z]+(?: [A-Z][a-z]+){0,2}(?:,? (?:[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[A-Z]{2} \d{5}(?:-\d{4})?))?",
         "extract"),
        ("_CARD_RE", rf"(?<![0-9A-Za-z])(?:[0-9]{{13,19}}|[0-9]{{4}}{_m._SEP}[0-9]{{6}}{_m._SEP}[0-9]{{4,5}}"
         rf"|[0-9]{{4}}(?:{_m._SEP}[0-9]{{4}}){{2,4}}(?:{_m._SEP}[0-9]{{1,3}})?)(?![0-9])", "masking"),
    ]
}
# Pieces the patterns above look for, so that random texts hit them often.
_PIECES = [
    "1", "12", "123", "1234", "12345", "0", "00", "33", "+", "+33", "06", "(0)", " ", "  ", ".", ",", "-",
    "/", "*", "_", "'", "a", "A", "É", "é", "\n", "\t", "x1", "janvier", "jan", "may", "mai", "dec", "of",
    "er", "th", "2026", "hier", "avant-hier", "avant hier", "today", "this morning", "lundi", "dernier",
    "last", "monday", "€", "$", "us$", "usd", "eur", "euros", "chf", "£", "francs suisses", "VIR", "DOS",
    "AB", "X", "dossier", "ticket", "case", "cheque", "n°", "#", ":", "reference", "ref", "client",
    "numero de transaction", "transaction", "order", "commande", "number", "rue", "avenue", "bis", "Paris",
    "Street", "Baker", "London", "SW1A 1AA", "4111 1111 1111 1111", "FR76 3000 6000 0112 3456 7890 189",
    "fr7630006000011234567890189", "ſE", "K", "İ", "virement", "wire", "transfer", "wire transfer",
    "direct debit", "debit card", "carte bancaire", "cb", "fraude", "operation non reconnue", "app",
    "12/05/26", "3.4.2026", "2026-11-05", "5 mai 2026", "march 3rd, 2026", "1 250,00 €", "12.50 eur",
    "VIR-2026-11-0042", "dossier 2026/1234", "ref: AB-12345", "06 12 34 56 78", "+44 20 7946 0958",
    "12 rue des Lilas, 75011 Paris", "221B Baker Street, London",
]  # fmt: skip
_texts = st.lists(st.sampled_from(_PIECES) | st.text(max_size=3), max_size=25).map("".join)


def _matches(pattern: re.Pattern[str], text: str) -> list[tuple[tuple[int, int], tuple[str | Any, ...]]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(_texts)
def test_fast_patterns_match_their_plain_form(text: str) -> None:
    for name, (plain, module) in _PLAIN_PATTERNS.items():
        fast = getattr(_x if module == "extract" else _m, name)
        for sample in (text, _x.fold(text)):
            if name == "_LAST_WEEKDAY_RE":  # no groups: the weekday is read from the match
                assert [m.span() for m in fast.finditer(sample)] == [m.span() for m in plain.finditer(sample)]
            else:
                assert _matches(fast, sample) == _matches(plain, sample), name
            middle = len(sample) // 2  # searched from a position: the start check sees before it
            fast_m, plain_m = fast.search(sample, middle), plain.search(sample, middle)
            assert (fast_m and fast_m.span()) == (plain_m and plain_m.span()), name


def _plain_keyword(folded: str, keyword: str) -> bool:
    words = _x.fold(keyword).split()
    return re.search(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)", folded) is not None


_KEYWORDS = [
    "fraude", "opération non reconnue", "app", "a", "é", "_x", "-ab", "a-b", "¨", "x ¨ y", "1",
    "l'app", "ab  cd", "wire transfer", "direct  debit", "İx", "ſ", "  ",
]  # fmt: skip


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(_texts, st.lists(st.sampled_from(_KEYWORDS), max_size=8))
def test_keyword_lookups_match_their_plain_form(text: str, keywords: list[str]) -> None:
    folded = _x.fold(text)
    expected = [kw for kw in keywords if kw.strip() and _plain_keyword(folded, kw)]
    assert _x._matches_any(folded, keywords) == expected
    assert _x.choose_category(folded, [("k", keywords)], "default") == ("k" if expected else "default")
    plain_ops = tuple(
        key for key in _x.OPERATION_TYPES
        if re.search(r"(?<!\w)(?:" + "|".join(map(re.escape, _x._OPERATION_WORDS[key])) + r")(?!\w)", folded)
    )  # fmt: skip
    assert _x.extract_operation_types(folded) == plain_ops


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | _texts)
def test_fold_and_normalise_match_their_plain_form(text: str) -> None:
    assert _x.fold(text) == "".join(map(_x._fold_char, text))
    table = {0xA0: " ", 0x202F: " ", 0x2009: " ", 0x2019: "'", 0x2018: "'", 0x0D: "\n"}
    assert _x.normalise(text) == text[: _x.MAX_SCAN_CHARS].replace("\r\n", "\n").translate(table)


@pytest.mark.slow
def test_fold_of_every_character() -> None:
    every = "".join(map(chr, range(0x110000)))
    assert _x.fold(every) == "".join(map(_x._fold_char, every))
    assert _x.fold("Éµ€") == "eμ€"  # µ folds to Greek mu, outside cp1252


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_texts)
def test_masking_in_one_pass_matches_separate_calls(text: str) -> None:
    assert _m.mask_and_find(text) == (
        mask_sensitive(text), find_ibans(text), find_cards(_m.mask_ibans(text))
    )
    assert _m.iban_spans(text) == _m._scan(text, _m._IBAN_RE, _m._iban_span)  # without the hint


@pytest.mark.parametrize(("text", "phone"), [
    ("Tél : 06 90 12 34 56", "+590 690 12 34 56"),  # Saint-Martin mobile (issue 22: was +33)
    ("Fixe 0590 87 65 43", "+590 590 87 65 43"),
    ("+33 6 90 12 34 56", "+590 690 12 34 56"),
    ("0696 11 22 33", "+596 696 11 22 33"),  # Martinique
    ("0692 11 22 33", "+262 692 11 22 33"),  # La Réunion
    ("06 12 34 56 78", "+33 6 12 34 56 78"),
])
def test_overseas_numbers_keep_their_own_country_code(text: str, phone: str) -> None:
    assert extract_phone(text) == phone
