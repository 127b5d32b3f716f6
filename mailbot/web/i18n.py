"""The words of the web pages, in French and English (`words(lang)["key"]`).

Mail wording lives in templates/; these are the pages' own labels, buttons and
errors. A key missing from one language falls back to the other, and a test
checks that both languages have the same keys.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("fr", "en")

_FR: dict[str, str] = {
    "lang_name": "Français", "other_lang": "English", "skip": "Aller au contenu",
    "complaints_of": "Réclamations", "form_title": "Déposer une réclamation",
    "form_intro": "Décrivez votre réclamation : vous recevrez par e-mail un accusé de réception avec "
                  "sa référence, la date de notre réponse et un lien pour suivre son traitement.",
    "required_note": "Les champs marqués * sont obligatoires.",
    "you": "Vous", "facts": "Les faits", "your_words": "Votre réclamation", "documents": "Documents",
    "name": "Nom et prénom", "email": "Adresse e-mail", "phone": "Téléphone",
    "customer_number": "Numéro client ou de contrat", "subject": "Objet",
    "description": "Décrivez les faits et ce que vous demandez",
    "fact_date": "Date des faits", "operation_type": "Type d'opération", "amount": "Montant",
    "currency": "Devise", "references": "Références (opération, contrat, courrier…)",
    "steps_taken": "Démarches déjà effectuées (appel, courrier, agence…)",
    "files": "Pièces justificatives", "files_hint": "Jusqu'à {max_files} fichiers ({types}), {max_mb} Mo au total.",
    "choose": "— choisir —", "op_virement": "Virement", "op_paiement": "Paiement", "op_prelevement": "Prélèvement",
    "op_carte": "Carte", "op_retrait": "Retrait", "op_investissement": "Investissement / projet", "op_autre": "Autre",
    "send": "Envoyer ma réclamation", "website": "Ne pas remplir ce champ",
    "errors_title": "Votre réclamation n'est pas encore envoyée : corrigez les champs signalés.",
    "files_again": "Pour votre sécurité, les fichiers choisis ne sont pas conservés : joignez-les de nouveau.",
    "err_required": "Ce champ est obligatoire.", "err_bad_email": "Cette adresse e-mail n'est pas valide.",
    "err_own_address": "Indiquez votre propre adresse e-mail.",
    "err_too_short": "Décrivez les faits en quelques mots au moins.",
    "err_bad_date": "Date invalide.", "err_future_date": "La date des faits ne peut pas être dans le futur.",
    "err_bad_choice": "Choix invalide.", "err_bad_amount": "Montant invalide (ex. 1250,00).",
    "err_too_many_files": "Trop de fichiers.", "err_file_type": "Type de fichier non accepté.",
    "err_empty_file": "Un fichier est vide.",
    "done_title": "Réclamation enregistrée", "done_ref": "Votre réclamation est enregistrée sous la référence",
    "done_mail": "Un accusé de réception vient de vous être envoyé par e-mail : il indique la date de notre "
                 "réponse et contient le lien pour suivre votre réclamation et nous envoyer d'autres documents.",
    "status_title": "Suivi de votre réclamation", "status": "Statut", "received": "Reçue le",
    "promised": "Réponse promise au plus tard le", "answered_on": "Réponse envoyée le",
    "messages": "Échanges", "from_you": "Vous", "from_us": "Nous", "attachments": "Pièces jointes",
    "add_documents": "Envoyer d'autres documents", "add_text": "Message (facultatif)",
    "add_send": "Envoyer", "added": "Merci : vos documents sont joints à votre réclamation.",
    "reexam_title": "Demander un réexamen",
    "reexam_intro": "Notre réponse ne vous satisfait pas ? Vous pouvez demander un réexamen de votre réclamation.",
    "reexam_reason": "Pourquoi demandez-vous un réexamen ?", "reexam_send": "Demander un réexamen",
    "reexam_done": "Votre demande de réexamen est enregistrée ; vous recevrez un accusé de réception par e-mail.",
    "reexam_subject": "Demande de réexamen", "documents_subject": "Documents complémentaires",
    "st_new": "Reçue", "st_acknowledged": "Enregistrée", "st_in_progress": "En cours de traitement",
    "st_waiting_customer": "En attente d'informations de votre part", "st_answered": "Réponse envoyée",
    "st_reexamination": "En réexamen", "st_closed": "Clôturée",
    "err_title_400": "Demande invalide", "err_title_403": "Action refusée", "err_title_404": "Page introuvable",
    "err_title_410": "Lien expiré", "err_title_413": "Envoi trop volumineux", "err_title_429": "Trop de demandes",
    "err_title_503": "Service momentanément indisponible", "err_title_401": "Authentification requise",
    "err_body_400": "La demande n'a pas pu être comprise.",
    "err_body_403": "Le jeton de sécurité du formulaire manque ou a expiré. Rechargez la page et recommencez.",
    "err_body_404": "Cette page n'existe pas ou vous n'y avez pas accès.",
    "err_body_410": "Ce lien n'est plus valable : le dossier n'est plus conservé.",
    "err_body_413": "Les fichiers envoyés dépassent la taille autorisée ({max_mb} Mo au total).",
    "err_body_429": "Trop d'envois depuis cette adresse ou cette connexion en une heure. Réessayez plus tard "
                    "ou écrivez-nous par e-mail.",
    "err_body_503": "Nous ne pouvons pas enregistrer votre demande pour le moment. Rien n'a été perdu de ce "
                    "que vous avez saisi : réessayez dans quelques minutes.",
    "err_body_401": "Connectez-vous pour continuer.",
    "back_home": "Retour à l'accueil",
    # staff
    "console": "Console réclamations", "signin_title": "Connexion du personnel",
    "signin_intro": "Saisissez votre adresse professionnelle : vous recevrez un lien de connexion valable "
                    "{minutes} minutes, utilisable une seule fois.",
    "signin_send": "Recevoir un lien de connexion",
    "signin_sent": "Si cette adresse est celle d'un membre du personnel, un lien de connexion vient d'y être envoyé.",
    "signin_confirm": "Se connecter en tant que {agent}", "signin_go": "Se connecter",
    "signin_bad": "Ce lien de connexion n'est pas valable, a expiré ou a déjà servi. Demandez-en un nouveau.",
    "signout": "Se déconnecter", "dashboard": "Tableau de bord", "queue": "File", "search": "Recherche",
    "signed_in_as": "Connecté·e :", "open_cases": "Ouvertes", "overdue": "En retard",
    "due_this_week": "Échéance cette semaine",
    "ack_chart": "Délai d'accusé de réception (90 derniers jours)",
    "answer_chart": "Délai de réponse finale (90 derniers jours)",
    "ack_buckets": "< 1 h|1–4 h|4–24 h|1–2 j|> 2 j", "answer_buckets": "< 1 sem.|1–2 sem.|2–3 sem.|3–6 sem.|> 6 sem.",
    "queue_count": "Dossiers {first} à {last} sur {total}",
    "queue_count_more": "Dossiers {first} à {last} sur plus de {total}", "col_ref": "Référence", "col_customer": "Client",
    "col_category": "Catégorie", "col_assignee": "Attribué à", "col_due": "Échéance", "urgent": "urgent",
    "late_by": "en retard de {hours} h",
    "final_scheduled": "Réponse finale programmée pour le {when} : n'y répondez pas une seconde fois "
    "(un nouveau #final la remplace, un mail du client la suspend)",
    "final_held": "Réponse finale suspendue, en attente de l'agent : elle devait partir le {when} ; "
    "le client a écrit avant. À renvoyer (#final)",
    "no_cases": "Aucun dossier.", "pages": "Pages", "previous": "Précédente",
    "next": "Suivante", "filters": "Filtres", "brand": "Marque", "all": "toutes", "mine": "Les miens",
    "due_today": "Échéance aujourd'hui", "apply": "Filtrer", "search_label": "Référence, client, objet ou texte",
    "st_open": "Ouverts", "st_all": "Tous", "channel": "canal", "mail_bounces": "nos e-mails lui reviennent en erreur",
    "tier": "palier", "business_days": "jours ouvrés", "ack_due": "Accusé de réception dû", "acknowledged": "envoyé le",
    "linked": "Dossier lié", "extracted": "Éléments relevés", "missing": "Manquants",
    "quoted": "{n} lignes citées (historique)", "download": "télécharger", "not_kept": "non conservé",
    "notes": "Notes internes (jamais envoyées au client)", "actions": "Actions",
    "act_reply": "Répondre au client", "act_ask": "Demander des informations", "reply_text": "Texte envoyé au client",
    "act_final": "Réponse finale", "section_summary": "Rappel de la réclamation",
    "section_explanation": "Explication du problème", "section_steps": "Démarches effectuées",
    "section_corrective_measures": "Mesures correctives", "section_solution": "Solution apportée",
    "outcome": "Issue", "outcome_accepted": "Favorable", "outcome_partially_accepted": "Partiellement favorable",
    "outcome_rejected": "Défavorable (la médiation est indiquée)", "act_note": "Ajouter une note interne",
    "note_text": "Note (visible du personnel seulement)", "act_extend": "Prolonger le délai",
    "legal_cap": "Délai actuel : {used} jours ouvrés ; plafond réglementaire : {cap} jours ouvrés au total "
                 "(reste au plus {left}).",
    "days": "Jours ouvrés en plus", "reason_customer": "Raison (communiquée au client)",
    "act_other": "Palier, catégorie, priorité, attribution, clôture", "act_tier": "Changer de palier", "act_assign": "Attribuer",
    "close_reason": "Raison de la clôture (obligatoire sans réponse finale ; communiquée au client)",
    "act_close": "Clore le dossier", "timeline": "Historique", "when": "Quand", "event": "Événement",
    "who": "Qui", "details": "Détails",
    "done_reply": "Réponse envoyée au client.", "done_ask": "Demande d'informations envoyée au client.",
    "done_note": "Note ajoutée.", "done_final": "Réponse finale envoyée.", "done_extend": "Délai prolongé ; le client est prévenu.",
    "saved_reply": "Réponse type (ajoutée après votre texte)", "none": "— aucune —",
    "tier_reason": "Raison (communiquée au client si la date change)",
    "tier_reason_required": "Raison (obligatoire si la date change ; communiquée au client)",
    "act_category": "Changer de catégorie", "priority": "Priorité", "priority_normal": "normale",
    "priority_urgent": "urgente", "act_priority": "Changer de priorité",
    "act_merge": "Fusionner avec un autre dossier",
    "merge_help": "Les deux dossiers du client n'en font plus qu'un : le plus ancien est gardé, avec ses "
                  "échanges et ceux de l'autre et l'échéance la plus proche ; l'autre est clos. Le client "
                  "est prévenu par un seul e-mail.",
    "other_ref": "Référence de l'autre dossier", "act_more": "Dossiers liés et réexamen",
    "act_link": "Lier à un autre dossier",
    "link_help": "Les deux dossiers se citent l'un l'autre ; rien n'est envoyé au client.",
    "act_reopen_title": "Réexamen ou réouverture",
    "reopen_reason": "Raison (consignée dans l'historique)",
    "act_reexamine": "Ouvrir un réexamen (nouvel accusé de réception et nouveau délai)",
    "act_reopen": "Rouvrir sans réexamen",
    "done_category": "Catégorie changée.", "done_priority": "Priorité changée.", "done_link": "Dossiers liés.",
    "done_merge": "Dossiers fusionnés ; le client est prévenu.", "done_reopen": "Dossier rouvert.",
    "done_reexamine": "Réexamen ouvert ; le client reçoit un accusé de réception.",
    "register_download": "Télécharger le registre des réclamations (CSV)", "done_tier": "Palier changé.", "done_assign": "Dossier attribué.", "done_close": "Dossier clos.",
}

_EN: dict[str, str] = {
    "lang_name": "English", "other_lang": "Français", "skip": "Skip to content",
    "complaints_of": "Complaints", "form_title": "File a complaint",
    "form_intro": "Describe your complaint: you will receive an acknowledgement by email with its "
                  "reference, the date of our answer and a link to follow its handling.",
    "required_note": "Fields marked * are required.",
    "you": "You", "facts": "The facts", "your_words": "Your complaint", "documents": "Documents",
    "name": "Full name", "email": "Email address", "phone": "Phone",
    "customer_number": "Customer or contract number", "subject": "Subject",
    "description": "Describe the facts and what you ask for",
    "fact_date": "Date of the facts", "operation_type": "Type of operation", "amount": "Amount",
    "currency": "Currency", "references": "References (operation, contract, letter…)",
    "steps_taken": "Steps already taken (call, letter, branch…)",
    "files": "Supporting documents", "files_hint": "Up to {max_files} files ({types}), {max_mb} MB in all.",
    "choose": "— choose —", "op_virement": "Transfer", "op_paiement": "Payment", "op_prelevement": "Direct debit",
    "op_carte": "Card", "op_retrait": "Withdrawal", "op_investissement": "Investment / project", "op_autre": "Other",
    "send": "Send my complaint", "website": "Leave this field empty",
    "errors_title": "Your complaint is not sent yet: please correct the fields shown.",
    "files_again": "For your security, chosen files are not kept: please attach them again.",
    "err_required": "This field is required.", "err_bad_email": "This email address is not valid.",
    "err_own_address": "Give your own email address.",
    "err_too_short": "Describe the facts in a few words at least.",
    "err_bad_date": "Invalid date.", "err_future_date": "The date of the facts cannot be in the future.",
    "err_bad_choice": "Invalid choice.", "err_bad_amount": "Invalid amount (e.g. 1250.00).",
    "err_too_many_files": "Too many files.", "err_file_type": "This type of file is not accepted.",
    "err_empty_file": "A file is empty.",
    "done_title": "Complaint recorded", "done_ref": "Your complaint is recorded under the reference",
    "done_mail": "An acknowledgement has just been sent to you by email: it gives the date of our answer and "
                 "the link to follow your complaint and send us more documents.",
    "status_title": "Your complaint", "status": "Status", "received": "Received on",
    "promised": "Answer promised by", "answered_on": "Answer sent on",
    "messages": "Messages", "from_you": "You", "from_us": "Us", "attachments": "Attachments",
    "add_documents": "Send more documents", "add_text": "Message (optional)",
    "add_send": "Send", "added": "Thank you: your documents are added to your complaint.",
    "reexam_title": "Ask for a re-examination",
    "reexam_intro": "Not satisfied with our answer? You can ask for your complaint to be examined again.",
    "reexam_reason": "Why do you ask for a re-examination?", "reexam_send": "Ask for a re-examination",
    "reexam_done": "Your request for re-examination is recorded; you will receive an acknowledgement by email.",
    "reexam_subject": "Request for re-examination", "documents_subject": "Further documents",
    "st_new": "Received", "st_acknowledged": "Recorded", "st_in_progress": "Being handled",
    "st_waiting_customer": "Waiting for information from you", "st_answered": "Answer sent",
    "st_reexamination": "Being re-examined", "st_closed": "Closed",
    "err_title_400": "Bad request", "err_title_403": "Action refused", "err_title_404": "Page not found",
    "err_title_410": "Link expired", "err_title_413": "Upload too large", "err_title_429": "Too many requests",
    "err_title_503": "Service temporarily unavailable", "err_title_401": "Sign-in required",
    "err_body_400": "The request could not be understood.",
    "err_body_403": "The form's security token is missing or has expired. Reload the page and try again.",
    "err_body_404": "This page does not exist or you do not have access to it.",
    "err_body_410": "This link is no longer valid: the file is no longer kept.",
    "err_body_413": "The files sent exceed the allowed size ({max_mb} MB in all).",
    "err_body_429": "Too many submissions from this address or connection within an hour. Try again later "
                    "or write to us by email.",
    "err_body_503": "We cannot record your request right now. Nothing you typed is lost: try again in a few "
                    "minutes.",
    "err_body_401": "Sign in to continue.",
    "back_home": "Back to the start page",
    "console": "Complaints console", "signin_title": "Staff sign-in",
    "signin_intro": "Enter your work address: you will receive a sign-in link valid for {minutes} minutes, "
                    "usable once.",
    "signin_send": "Send me a sign-in link",
    "signin_sent": "If this address belongs to a staff member, a sign-in link has just been sent to it.",
    "signin_confirm": "Sign in as {agent}", "signin_go": "Sign in",
    "signin_bad": "This sign-in link is not valid, has expired or has been used already. Ask for a new one.",
    "signout": "Sign out", "dashboard": "Dashboard", "queue": "Queue", "search": "Search",
    "signed_in_as": "Signed in:", "open_cases": "Open", "overdue": "Overdue",
    "due_this_week": "Due this week",
    "ack_chart": "Time to acknowledge (last 90 days)",
    "answer_chart": "Time to final answer (last 90 days)",
    "ack_buckets": "< 1 h|1–4 h|4–24 h|1–2 d|> 2 d", "answer_buckets": "< 1 wk|1–2 wk|2–3 wk|3–6 wk|> 6 wk",
    "queue_count": "Cases {first} to {last} of {total}",
    "queue_count_more": "Cases {first} to {last} of more than {total}", "col_ref": "Reference", "col_customer": "Customer",
    "col_category": "Category", "col_assignee": "Assigned to", "col_due": "Due", "urgent": "urgent",
    "late_by": "{hours} h late",
    "final_scheduled": "Final response scheduled for {when}: do not answer again "
    "(a new #final replaces it, a mail from the customer holds it)",
    "final_held": "Final response held, waiting for the agent: it was to go on {when}; "
    "the customer wrote first. Send it again (#final)",
    "no_cases": "No cases.", "pages": "Pages", "previous": "Previous",
    "next": "Next", "filters": "Filters", "brand": "Brand", "all": "all", "mine": "Mine",
    "due_today": "Due today", "apply": "Filter", "search_label": "Reference, customer, subject or text",
    "st_open": "Open", "st_all": "All", "channel": "channel", "mail_bounces": "our mail to them bounces",
    "tier": "tier", "business_days": "business days", "ack_due": "Acknowledgement due", "acknowledged": "sent",
    "linked": "Linked case", "extracted": "Facts found", "missing": "Missing",
    "quoted": "{n} quoted lines (history)", "download": "download", "not_kept": "not kept",
    "notes": "Internal notes (never sent to the customer)", "actions": "Actions",
    "act_reply": "Reply to the customer", "act_ask": "Ask for information", "reply_text": "Text sent to the customer",
    "act_final": "Final response", "section_summary": "Summary of the complaint",
    "section_explanation": "Explanation of the problem", "section_steps": "Steps taken",
    "section_corrective_measures": "Corrective measures", "section_solution": "Solution",
    "outcome": "Outcome", "outcome_accepted": "Accepted", "outcome_partially_accepted": "Partially accepted",
    "outcome_rejected": "Rejected (mediation is stated)", "act_note": "Add an internal note",
    "note_text": "Note (staff only)", "act_extend": "Extend the deadline",
    "legal_cap": "Current time allowed: {used} business days; regulatory cap: {cap} business days in all "
                 "({left} more at most).",
    "days": "More business days", "reason_customer": "Reason (told to the customer)",
    "act_other": "Tier, category, priority, assignment, closing", "act_tier": "Change tier", "act_assign": "Assign",
    "close_reason": "Reason for closing (required without a final response; told to the customer)",
    "act_close": "Close the case", "timeline": "Timeline", "when": "When", "event": "Event",
    "who": "Who", "details": "Details",
    "done_reply": "Reply sent to the customer.", "done_ask": "Request for information sent to the customer.",
    "done_note": "Note added.", "done_final": "Final response sent.", "done_extend": "Deadline extended; the customer is told.",
    "saved_reply": "Saved reply (added after your text)", "none": "— none —",
    "tier_reason": "Reason (told to the customer if the date moves)",
    "tier_reason_required": "Reason (required if the date moves; told to the customer)",
    "act_category": "Change category", "priority": "Priority", "priority_normal": "normal",
    "priority_urgent": "urgent", "act_priority": "Change priority",
    "act_merge": "Merge with another case",
    "merge_help": "The customer's two cases become one: the older is kept, with its messages and the "
                  "other's and the sooner deadline; the other is closed. The customer is told by one email.",
    "other_ref": "Reference of the other case", "act_more": "Related cases and re-examination",
    "act_link": "Link to another case",
    "link_help": "Each case names the other; nothing is sent to the customer.",
    "act_reopen_title": "Re-examination or reopening",
    "reopen_reason": "Reason (kept in the timeline)",
    "act_reexamine": "Open a re-examination (new acknowledgement and deadline)",
    "act_reopen": "Reopen without re-examination",
    "done_category": "Category changed.", "done_priority": "Priority changed.", "done_link": "Cases linked.",
    "done_merge": "Cases merged; the customer is told.", "done_reopen": "Case reopened.",
    "done_reexamine": "Re-examination opened; the customer gets an acknowledgement.",
    "register_download": "Download the complaint register (CSV)", "done_tier": "Tier changed.", "done_assign": "Case assigned.", "done_close": "Case closed.",
}

_ALL = {"fr": _FR, "en": _EN}


class Words(dict[str, str]):
    """A language's words; `w.fmt("key", n=1)` fills placeholders."""

    def fmt(self, key: str, **values: Any) -> str:
        return self[key].format(**values)


def words(language: str) -> Words:
    lang = language if language in _ALL else "fr"
    other = "en" if lang == "fr" else "fr"
    return Words({**_ALL[other], **_ALL[lang]})


def pick_language(requested: str | None, default: str, offered: list[str] | tuple[str, ...] = LANGUAGES) -> str:
    """The language asked for (`?lang=`), if offered, else the default."""
    if requested in offered and requested in LANGUAGES:
        return requested
    return default if default in LANGUAGES else "fr"


def all_keys() -> dict[str, set[str]]:
    return {lang: set(d) for lang, d in _ALL.items()}
