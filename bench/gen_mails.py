#!/usr/bin/env python3
"""(Adapted from ../shared/peer/gen_mails.py.) Deterministic generator of French complaint e-mails for helpdesk ingestion benchmarks.

    python3 gen_mails.py --n 500 --out /tmp/mailbot-peer/mails            # write NNNN.eml + manifest.jsonl
    python3 gen_mails.py --out /tmp/mailbot-peer/mails --load \\
        --host 127.0.0.1 --port 21143 --user support@example.test --password pw --purge
                                                                   # (re)fill INBOX over IMAP APPEND

The same seed always yields byte-identical .eml files (Date/Message-ID are derived
from the seed, not from the clock), so the set can be fed to any other system.
Mix (N=500): ~60 % text/plain (8bit / quoted-printable / base64 bodies),
~25 % multipart/mixed with a ~20 KB PDF attachment, ~10 % multipart/alternative
(text + HTML), ~5 % HTML-only. Only the standard library is used.
"""
from __future__ import annotations

import argparse
import imaplib
import json
import os
import random
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

FIRST = ["Marie", "Jean", "Sophie", "Pierre", "Camille", "Luc", "Élodie", "François", "Chloé",
         "Hélène", "Nicolas", "Amélie", "Jérôme", "Céline", "Thomas", "Inès", "Gaëlle", "Benoît",
         "Léa", "Mathieu", "Anaïs", "Sébastien", "Julie", "Raphaël", "Zoé", "Noël", "Agnès"]
LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
        "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Bertrand", "Roux", "Fournier",
        "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Müller", "Lemaître"]
DOMAINS = ["gmail.com", "orange.fr", "free.fr", "laposte.net", "sfr.fr", "yahoo.fr",
           "hotmail.fr", "outlook.fr", "wanadoo.fr", "protonmail.com", "entreprise-dupont.fr"]
MONTHS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
          "septembre", "octobre", "novembre", "décembre"]

# (subject, opening, detail template, request) -- {date}, {amount}, {ref}, {iban}, {client}
TOPICS = [
    ("Réclamation virement non reçu",
     "Je vous contacte au sujet d'un virement de {amount} émis le {date} qui n'a toujours pas été crédité sur mon compte.",
     "La référence de l'opération est {ref}. Le compte bénéficiaire est {iban}.",
     "Merci de lancer une recherche auprès de la banque émettrice et de me tenir informé."),
    ("Contestation prélèvement non autorisé",
     "J'ai constaté sur mon relevé un prélèvement de {amount} daté du {date} que je n'ai jamais autorisé.",
     "Le libellé indique « {ref} ». Je n'ai signé aucun mandat SEPA avec ce créancier.",
     "Je demande le remboursement immédiat de cette somme et l'opposition sur ce créancier."),
    ("Frais bancaires injustifiés",
     "Des frais d'incident de {amount} ont été prélevés le {date} alors que mon compte était créditeur.",
     "Mon numéro client est {client} ; la ligne concernée porte la référence {ref}.",
     "Je vous remercie de bien vouloir procéder à leur remboursement."),
    ("Carte bancaire bloquée sans explication",
     "Depuis le {date}, ma carte est refusée chez tous les commerçants, y compris pour un achat de {amount}.",
     "Aucune notification ne m'a été envoyée. Dossier {ref}, client {client}.",
     "Pouvez-vous débloquer ma carte ou m'expliquer la raison de ce blocage ?"),
    ("Double débit sur mon compte",
     "La même opération de {amount} a été débitée deux fois le {date}.",
     "Les deux lignes portent la référence {ref}. Compte {iban}.",
     "Merci de recréditer le montant débité en double dans les meilleurs délais."),
    ("Remboursement non effectué",
     "Vous m'aviez promis le remboursement de {amount} avant le {date}, or je n'ai rien reçu.",
     "Numéro de dossier : {ref}. Numéro client : {client}.",
     "Sans réponse sous huit jours, je saisirai le médiateur."),
    ("Retard de livraison commande",
     "Ma commande d'un montant de {amount}, passée le {date}, n'est toujours pas livrée.",
     "Le numéro de suivi {ref} n'a pas évolué depuis plus d'une semaine.",
     "Je souhaite une date de livraison ferme ou l'annulation avec remboursement."),
    ("Facture erronée",
     "La facture reçue le {date} mentionne un montant de {amount} qui ne correspond pas à mon contrat.",
     "Référence de la facture : {ref}. Client n° {client}.",
     "Merci de m'adresser une facture rectificative."),
    ("Résiliation non prise en compte",
     "J'ai résilié mon contrat par lettre recommandée le {date}, mais on m'a encore prélevé {amount}.",
     "Accusé de réception n° {ref}. Compte débité : {iban}.",
     "Je vous demande de confirmer la résiliation et de me rembourser."),
    ("Colis reçu endommagé",
     "Le colis livré le {date} (valeur {amount}) était ouvert et le produit cassé.",
     "Commande {ref}, client {client}. Des photos sont disponibles sur demande.",
     "Je souhaite un échange ou un remboursement intégral."),
]
GREETINGS = ["Bonjour,", "Madame, Monsieur,", "Bonjour Madame, Monsieur,", "Bonsoir,"]
CLOSINGS = ["Cordialement,", "Bien cordialement,", "Salutations distinguées,",
            "Dans l'attente de votre retour, cordialement,", "Merci d'avance,"]
SUBJECT_SUFFIX = ["", "", "", " - URGENT", " (2e relance)", " – dossier {ref}", " réf. {ref}"]


def fr_amount(rng: random.Random) -> str:
    v = rng.choice([rng.uniform(5, 120), rng.uniform(120, 2500), rng.uniform(2500, 15000)])
    euros, cents = divmod(round(v * 100), 100)
    s = f"{euros:,}".replace(",", "\u202f")
    return f"{s},{cents:02d} €"


def fr_date(rng: random.Random, base: datetime) -> str:
    d = base - timedelta(days=rng.randint(2, 90))
    return rng.choice([d.strftime("%d/%m/%Y"), f"{d.day} {MONTHS[d.month - 1]} {d.year}"])


def fake_iban(rng: random.Random) -> str:
    digits = "".join(str(rng.randint(0, 9)) for _ in range(23))
    return "FR76 " + " ".join(digits[i:i + 4] for i in range(0, 23, 4))


def fake_pdf(rng: random.Random, size: int, title: str) -> bytes:
    """A structurally valid single-page PDF padded with a pseudo-random (incompressible) stream."""
    text = f"BT /F1 14 Tf 50 780 Td ({title}) Tj ET\n".encode("latin-1", "replace")
    pad = rng.randbytes(max(0, size - 900))
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /BitsPerComponent 8 "
        b"/ColorSpace /DeviceGray /Filter /FlateDecode /Length %d >>\nstream\n" % len(pad)
        + pad + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def html_of(paragraphs: list[str]) -> str:
    def esc(s):
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = "\n".join(f"<p>{esc(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Réclamation</title></head>"
            f"<body style=\"font-family:Arial,sans-serif\">\n{body}\n</body></html>\n")


def build(i: int, rng: random.Random, base: datetime, to_addr: str) -> tuple[EmailMessage, dict]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = (f"{first}.{last}".lower().replace("é", "e").replace("è", "e").replace("ë", "e")
             .replace("ç", "c").replace("ï", "i").replace("ô", "o").replace("ü", "u")
             .replace("â", "a").replace("î", "i").replace("ê", "e"))
    sender = Address(f"{first} {last}", addr_spec=f"{local}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}")
    subj, opening, detail, request = rng.choice(TOPICS)
    ref = rng.choice(["VIR", "PRLV", "DOS", "CMD", "FAC", "REC"]) + f"-{base.year}-{rng.randint(1, 99999):05d}"
    vals = dict(amount=fr_amount(rng), date=fr_date(rng, base), ref=ref, iban=fake_iban(rng),
                client=f"{rng.randint(10000000, 99999999)}")
    subject = subj + rng.choice(SUBJECT_SUFFIX).format(**vals)
    paras = [rng.choice(GREETINGS), opening.format(**vals), detail.format(**vals)]
    if rng.random() < 0.4:
        paras.append(f"J'ai déjà appelé votre service client le {fr_date(rng, base)} sans obtenir de réponse satisfaisante.")
    paras += [request, rng.choice(CLOSINGS), f"{first} {last}\n{rng.randint(1, 150)} rue "
              f"{rng.choice(['de la République', 'Victor Hugo', 'des Lilas', 'Jean Jaurès'])}, "
              f"{rng.randint(10, 95)}{rng.randint(0, 999):03d} {rng.choice(['Lyon', 'Paris', 'Nantes', 'Lille', 'Besançon', 'Orléans'])}"]
    text = "\n\n".join(paras) + "\n"

    r = rng.random()
    kind = ("plain" if r < 0.60 else "attachment" if r < 0.85 else "alternative" if r < 0.95 else "html")
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to_addr
    if rng.random() < 0.1:
        msg["Cc"] = Address(f"{rng.choice(FIRST)} {rng.choice(LAST)}", addr_spec=f"conjoint{i}@{rng.choice(DOMAINS)}")
    msg["Subject"] = subject
    sent = base - timedelta(minutes=(500 - i) * 7 + rng.randint(0, 5))
    msg["Date"] = format_datetime(sent)
    msg["Message-ID"] = f"<bench-{i:05d}.{rng.getrandbits(40):010x}@{sender.domain}>"
    msg["MIME-Version"] = "1.0"
    msg["X-Bench-Id"] = f"{i:05d}"
    if "URGENT" in subject:
        msg["Importance"] = "high"
    cte = rng.choice([None, None, "quoted-printable", "base64"])  # None -> 8bit (what Thunderbird sends)
    att_name = None
    if kind == "html":
        msg.set_content(html_of(paras), subtype="html", cte=cte or "quoted-printable")
    else:
        if cte is None:  # 8bit UTF-8, wrapped at 72 columns like Thunderbird/Apple Mail
            cte = "8bit"
            text = "\n\n".join("\n".join(textwrap.fill(line, 72) for line in p.split("\n"))
                               for p in paras) + "\n"
        msg.set_content(text, cte=cte)
        if kind == "alternative":
            msg.add_alternative(html_of(paras), subtype="html")
        elif kind == "attachment":
            att_name = rng.choice(["releve_compte.pdf", "justificatif_virement.pdf", "facture.pdf",
                                   "capture_ecran.pdf", "relevé_bancaire.pdf", "courrier_résiliation.pdf"])
            size = rng.randint(18_000, 22_000)
            msg.add_attachment(fake_pdf(rng, size, f"{subj} {ref}"), maintype="application",
                               subtype="pdf", filename=att_name)
    body_part = msg.get_body(preferencelist=("plain", "html"))
    meta = {"id": f"{i:05d}", "file": f"{i:05d}.eml", "kind": kind,
            "cte": body_part.get("Content-Transfer-Encoding", "7bit"),
            "from": sender.addr_spec, "subject": subject, "ref": ref, "amount": vals["amount"],
            "message_id": msg["Message-ID"], "attachment": att_name}
    return msg, meta


def generate(n: int, out: str, seed: int, to_addr: str) -> list[dict]:
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(".eml"):
            os.unlink(os.path.join(out, f))
    rng = random.Random(seed)
    base = datetime(2025, 6, 2, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    manifest = []
    for i in range(1, n + 1):
        msg, meta = build(i, rng, base, to_addr)
        data = msg.as_bytes(policy=policy.SMTP)  # CRLF line endings, RFC 5322 on-the-wire form
        meta["bytes"] = len(data)
        with open(os.path.join(out, meta["file"]), "wb") as fh:
            fh.write(data)
        manifest.append(meta)
    with open(os.path.join(out, "manifest.jsonl"), "w", encoding="utf-8") as fh:
        for m in manifest:
            fh.write(json.dumps(m, ensure_ascii=False) + "\n")
    return manifest


def generate_bytes(n: int, to_addr: str = "support@kalra-plus.com", seed: int = 20250602) -> list[bytes]:
    """The same deterministic set, in memory (for benchmarks)."""
    rng = random.Random(seed)
    base = datetime(2025, 6, 2, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    return [build(i, rng, base, to_addr)[0].as_bytes(policy=policy.SMTP) for i in range(1, n + 1)]


def load_imap(out: str, host: str, port: int, user: str, password: str, folder: str, purge: bool) -> int:
    files = sorted(f for f in os.listdir(out) if f.endswith(".eml"))
    m = imaplib.IMAP4(host, port)
    m.login(user, password)
    typ, _ = m.select(folder)
    if typ != "OK":
        m.create(folder)
        m.select(folder)
    if purge:
        typ, data = m.search(None, "ALL")
        if data and data[0]:
            m.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            m.expunge()
    for f in files:
        with open(os.path.join(out, f), "rb") as fh:
            typ, resp = m.append(folder, None, None, fh.read())
        if typ != "OK":
            raise SystemExit(f"APPEND {f} failed: {resp}")
    typ, data = m.select(folder)
    count = int(data[0])
    m.logout()
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=20250602)
    ap.add_argument("--out", default="/tmp/mailbot-peer/mails")
    ap.add_argument("--to", default="support@example.test")
    ap.add_argument("--no-generate", action="store_true", help="only (re)load existing .eml files")
    ap.add_argument("--load", action="store_true", help="APPEND the .eml files to an IMAP folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=21143)
    ap.add_argument("--user", default="support@example.test")
    ap.add_argument("--password", default="pw")
    ap.add_argument("--folder", default="INBOX")
    ap.add_argument("--purge", action="store_true", help="expunge everything in the folder first")
    a = ap.parse_args()
    if not a.no_generate:
        t = time.perf_counter()
        man = generate(a.n, a.out, a.seed, a.to)
        kinds = {}
        for m in man:
            kinds[m["kind"]] = kinds.get(m["kind"], 0) + 1
        tot = sum(m["bytes"] for m in man)
        print(f"generated {len(man)} messages in {a.out} ({tot / 1e6:.1f} MB, kinds={kinds}) "
              f"in {time.perf_counter() - t:.2f}s", file=sys.stderr)
    if a.load:
        t = time.perf_counter()
        c = load_imap(a.out, a.host, a.port, a.user, a.password, a.folder, a.purge)
        print(f"{a.folder} now holds {c} messages (load {time.perf_counter() - t:.2f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
