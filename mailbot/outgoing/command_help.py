"""The command help in staff mail, fitted to the brand and the case.

Each brand's own tiers, category keys and saved replies; the section headings
`#final` needs for this brand, spelt in the case's language; the sentences in the
staff member's language (French, else English).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailbot.config import BrandConfig

# The heading an agent writes for each section of a final response, per language
# (mailbot.cases.actions also accepts other spellings of them).
HEADINGS: dict[str, dict[str, str]] = {
    "fr": {"summary": "Résumé :", "explanation": "Explication :", "steps": "Étapes suivies :",
           "corrective_measures": "Mesures correctives :", "solution": "Solution :", "outcome": "Issue :"},
    "en": {"summary": "Summary:", "explanation": "Explanation:", "steps": "Steps taken:",
           "corrective_measures": "Corrective measures:", "solution": "Solution:", "outcome": "Outcome:"},
}
_REJECTED = {"fr": "rejeté", "en": "rejected"}


def heading(section: str, language: str) -> str:
    return HEADINGS.get(language, HEADINGS["en"])[section]


def command_help(brand: BrandConfig, language: str, case_language: str,
                 replies: Sequence[str] = ()) -> list[dict[str, str]]:
    """[{name, help}] for the staff mail of one of `brand`'s cases."""
    fr = language == "fr"
    sections = ", ".join(f"« {heading(s, case_language)} »" if fr else f'"{heading(s, case_language)}"'
                         for s in brand.final_sections)
    refused = f"{heading('outcome', case_language)} {_REJECTED.get(case_language, 'rejected')}"
    tiers = "|".join(brand.sla.tiers)
    categories = "|".join(c.key for c in brand.categories) or "…"
    close_who = ("un superviseur" if fr else "a supervisor") if brand.close_without_final == "supervisor" \
        else ("tout agent" if fr else "any agent")
    rows = [
        ("#note texte" if fr else "#note text",
         "note interne, jamais envoyée au client (sur la ligne, ou tout le texte sous #note seul)" if fr
         else "internal note, never sent to the customer (on the line, or the whole text below #note alone)"),
        ("#ask question",
         "demande d'informations au client ; le dossier attend sa réponse" if fr
         else "ask the customer for information; the case waits for their answer"),
        ("#final",
         f"réponse finale, le texte sous la commande avec les sections {sections} ; « {refused} » pour un "
         "refus ; une par tour ; #final at 2026-12-01T09:00 pour l'envoyer plus tard (avant la date promise ; "
         "la réclamation reste ouverte jusque-là, un message du client la suspend)" if fr
         else f"final response, the text below the command with the sections {sections}; \"{refused}\" for "
              "a refusal; one per round; #final at 2026-12-01T09:00 to send it later (by the promised date; the "
              "case stays open until then, a mail from the customer holds it)"),
        ("#extend N raison" if fr else "#extend N reason",
         "prolonge le délai de N jours ouvrés ; la raison est envoyée au client ; une modification du délai "
         "par message, aucune après la réponse finale" if fr
         else "extend the deadline by N business days; the reason is sent to the customer; one change of the "
              "deadline per mail, none after the final response"),
        (f"#tier {tiers} [raison]" if fr else f"#tier {tiers} [reason]",
         "change le niveau de délai ; le client est prévenu de la nouvelle date (et de la raison)" if fr
         else "change the deadline tier; the customer is told the new date (and the reason)"),
        (f"#category {categories}", "change la catégorie" if fr else "change the category"),
        ("#priority urgent|normal", "change la priorité" if fr else "change the priority"),
        ("#assign agent@…", "assigne la réclamation (la personne est prévenue)" if fr
         else "assign the case (the assignee is told)"),
        ("#link RÉF" if fr else "#link REF", "rapproche deux réclamations" if fr else "relate two cases"),
        ("#merge RÉF" if fr else "#merge REF",
         "fait de celle-ci et de RÉF (même client, même sujet) une seule réclamation, la plus ancienne : un fil, "
         "un délai, le client prévenu une fois" if fr
         else "make this case and REF (same customer, same matter) one, the older: one thread, one deadline, the "
              "customer told once"),
        ("#reopen", "rouvre une réclamation close ou répondue" if fr else "reopen a closed or answered case"),
        ("#reexamine", "ouvre un réexamen (le client l'a demandé autrement que par mail)" if fr
         else "open a re-examination (the customer asked for one other than by mail)"),
        ("#close raison" if fr else "#close reason",
         f"clôt ; avant la réponse finale : une raison (envoyée au client) et {close_who}" if fr
         else f"close; before the final response: a reason (sent to the customer) and {close_who}"),
    ]
    if replies:
        rows.insert(4, (f"#reply {'|'.join(replies)}",
                        "envoie une réponse enregistrée (avec #ask : comme demande d'informations)" if fr
                        else "send a saved reply (with #ask: as a request for information)"))
    return [{"name": n, "help": h} for n, h in rows]
