"""What counts as asking for a re-examination (mailbot.cases.reexamination.asked_for): a table
of customers' replies to a final response, French and English."""

from __future__ import annotations

import pytest

from mailbot.cases.reexamination import asked_for

ASKS = [
    "Je conteste votre réponse.",
    "Je souhaite contester cette décision.",
    "Je demande un réexamen de mon dossier.",
    "Merci de réexaminer ma réclamation.",
    "Je ne suis pas satisfait de cette réponse.",
    "Je ne suis pas du tout satisfaite.",
    "Je suis en désaccord avec votre analyse.",
    "Pouvez-vous revoir votre position ?",
    "Je vais faire appel de cette décision.",
    "I am not satisfied with your answer.",
    "I disagree with this outcome.",
    "I would like to appeal.",
    "Please review my case again.",
    "Please reconsider.",
]
THANKS = [
    "Merci, ça marche maintenant !",
    "Merci beaucoup, c'est réglé.",
    "Je ne conteste pas votre réponse, merci.",
    "Je suis satisfait, merci.",
    "Thank you, it works now.",
    "Thanks, all good.",
    "",
]


@pytest.mark.parametrize("text", ASKS)
def test_these_ask_for_a_reexamination(text: str) -> None:
    assert asked_for("Re: Réponse à votre réclamation", text)


@pytest.mark.parametrize("text", THANKS)
def test_these_do_not(text: str) -> None:
    assert asked_for("Re: Réponse à votre réclamation", text) is None


def test_the_status_page_button_asks_by_its_subject() -> None:
    assert asked_for("[KP-2026-000001] Demande de réexamen", "Le virement n'est toujours pas arrivé.")
    assert asked_for("[KP-2026-000001] Request for re-examination", "")
