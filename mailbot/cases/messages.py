"""What mailbot says to staff about their commands, in their language (French or English).

A refusal is raised with `Say(key, **params)` reasons (mailbot.cases.actions.Rejected):
the rejection mail reads them in its recipient's language (`Say.text(language)`), the
command line and the logs in English (`str(say)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MESSAGES: dict[str, dict[str, str]] = {
    "closed": {"fr": "la réclamation {ref} est close", "en": "case {ref} is closed"},
    "no_text": {"fr": "la réponse n'a pas de texte pour le client", "en": "the reply has no text for the customer"},
    "file_refused": {"fr": "pièce jointe refusée, rien n'a été envoyé : {problem}",
                     "en": "attachment refused, nothing was sent: {problem}"},
    "missing_section": {"fr": "section manquante : « {heading} » (écrivez-la en début de ligne, suivie du texte)",
                        "en": "missing section: \"{heading}\" (write it at the start of a line, then the text)"},
    "extend_days": {"fr": "N doit être compris entre 1 et 60 jours ouvrés (reçu : {days})",
                    "en": "N must be between 1 and 60 business days, got {days}"},
    "extend_reason": {"fr": "une raison est requise : elle est envoyée au client",
                      "en": "a reason is required: the customer is told why"},
    "extend_usage": {"fr": "usage : #extend N raison (N jours ouvrés)", "en": "usage: #extend N reason (N business days)"},
    "unknown_tier": {"fr": "niveau de délai inconnu « {tier} » ; {brand} a : {known}",
                     "en": "unknown tier {tier!r}; {brand} has {known}"},
    "unknown_category": {"fr": "catégorie inconnue « {category} » ; catégories : {known}",
                         "en": "unknown category {category!r}; known: {known}"},
    "priority": {"fr": "la priorité est urgent ou normal (reçu : « {priority} »)",
                 "en": "priority must be urgent or normal, got {priority!r}"},
    "not_an_agent": {"fr": "{address} n'est pas un agent configuré", "en": "{address} is not a configured agent"},
    "not_of_brand": {"fr": "{address} ne travaille pas pour {brand}", "en": "{address} does not work for {brand}"},
    "close_reason": {"fr": "aucune réponse finale n'a été envoyée : la clôture demande une raison (#close raison), "
                           "qui est envoyée au client",
                     "en": "no final response was sent: closing needs a reason (#close reason), which the "
                           "customer is told"},
    "close_supervisor": {"fr": "aucune réponse finale n'a été envoyée : seul un superviseur peut clore {ref} "
                               "(envoyez la réponse finale avec #final, ou demandez à un superviseur)",
                         "en": "no final response was sent: only a supervisor may close {ref} (send the final "
                               "response with #final, or ask a supervisor)"},
    "merged_not_reopenable": {"fr": "{ref} a été fusionnée dans {into} : rouvrez {into}",
                              "en": "{ref} was merged into {into}: reopen {into}"},
    "not_reopenable": {"fr": "{ref} est « {status} », ni close ni répondue", "en": "{ref} is {status}, not closed or answered"},
    "note_empty": {"fr": "la note est vide : écrivez-la sur la ligne #note ou en dessous",
                   "en": "the note is empty: write it on the #note line or below it"},
    "unknown_command": {"fr": "commande inconnue {word} ; commandes : {known}",
                        "en": "unknown command {word}; known: {known}"},
    "final_usage": {"fr": "usage : #final, ou #final at 2026-12-01T09:00", "en": "usage: #final or #final at 2026-12-01T09:00"},
    "final_date": {"fr": "date illisible « {when} » ; écrivez 2026-12-01T09:00",
                   "en": "cannot read the date {when!r}; use 2026-12-01T09:00"},
    "ref_usage": {"fr": "usage : {command} RÉFÉRENCE (par ex. {command} KP-2026-000123)",
                  "en": "usage: {command} REFERENCE (e.g. {command} KP-2026-000123)"},
    "no_such_case": {"fr": "pas de réclamation {ref} chez {brand}", "en": "no case {ref} at {brand}"},
    "same_case": {"fr": "{ref} est la réclamation elle-même", "en": "{ref} is this very case"},
    "other_customer": {"fr": "{other} n'est pas du même client ({customer}) ni liée à {ref} : fusion refusée "
                             "(#link pour les rapprocher)",
                       "en": "{other} is not from the same customer ({customer}) nor linked to {ref}: not merged "
                             "(#link relates them)"},
    "already_merged": {"fr": "{ref} a déjà été fusionnée dans {into}", "en": "{ref} was already merged into {into}"},
    "no_reply": {"fr": "pas de réponse enregistrée « {name} » ; réponses : {known}",
                 "en": "no saved reply {name!r}; saved replies: {known}"},
    "digest_no_ref": {"fr": "elle ne nomme aucun dossier (aucun paragraphe ne commence par une référence)",
                      "en": "it names no case (no paragraph starts with a reference)"},
    "digest_no_case": {"fr": "pas de dossier de la marque, ou rien à faire, pour : {refs}",
                       "en": "no case of the brand, or nothing to do, for: {refs}"},
    "frozen": {"fr": "la réponse finale de ce tour est déjà partie ou programmée : son délai est figé "
                     "(un réexamen, #reexamine, ouvre un nouveau tour avec son propre délai)",
               "en": "this round's final response is already sent or scheduled: its deadline is frozen "
                     "(a re-examination, #reexamine, opens a new round with its own deadline)"},
    "final_again": {"fr": "une réponse finale a déjà été donnée dans ce tour : une seule par tour (un réexamen, "
                          "#reexamine, ouvre un nouveau tour)",
                    "en": "a final response was already given in this round: one per round (a re-examination, "
                          "#reexamine, opens a new round)"},
    "one_date_change": {"fr": "une seule modification du délai par message (#extend ou #tier), celui-ci en a {count} : "
                              "rien n'a été fait",
                        "en": "one change of the deadline per mail (#extend or #tier), this one has {count}: "
                              "nothing was done"},
    "final_past": {"fr": "une réponse finale se programme dans le futur : {when} est passé (il est {now})",
                   "en": "a final response is scheduled in the future: {when} is past (it is {now})"},
    "final_too_late": {"fr": "{when} est après la date promise au client ou la limite légale : au plus tard {latest}",
                       "en": "{when} is after the date promised to the customer or the legal limit: {latest} at "
                             "the latest"},
    "reply_error": {"fr": "la réponse enregistrée « {name} » n'a pas pu être rendue : {error}",
                    "en": "the saved reply {name!r} could not be rendered: {error}"},
}


@dataclass(frozen=True)
class Say:
    """One thing to tell an agent, said in their language when it is read."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def text(self, language: str) -> str:
        table = MESSAGES[self.key]
        return table.get(language, table["en"]).format(**self.params)

    def __str__(self) -> str:
        return self.text("en")


def say(key: str, **params: Any) -> Say:
    if key not in MESSAGES:
        raise KeyError(key)
    return Say(key, params)


def localized(reasons: list[str | Say], language: str) -> list[str]:
    """Reasons in `language` (plain strings are kept as they are)."""
    return [r.text(language) if isinstance(r, Say) else r for r in reasons]
