"""`mailbot.mail.addresses.simple_address` gives what the stdlib gives, or stands aside.

The fast path is compared with the running Python's `getaddresses` and `parseaddr`:
on the shapes it is for, on near misses, on generated values over an alphabet of
RFC 5322 specials, blanks, controls and non-ASCII, and on every address header of
the corpus mails. It may return None for anything (the stdlib then parses the
value); it must never return something the stdlib would not.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.utils import getaddresses, parseaddr
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.mail import classify, parsing
from mailbot.mail.addresses import simple_address

CORPORA = [Path(__file__).parent / "corpora",  # sisimai and talon
           Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "zammad" / "test" / "data" / "mail"]


def agrees(value: str) -> bool:
    fast = simple_address(value)
    return fast is None or (getaddresses([value]) == [fast] and parseaddr(value) == fast)


@pytest.mark.parametrize(("value", "expected"), [
    ("jean@example.fr", ("", "jean@example.fr")),
    ("  <jean@example.fr>\t", ("", "jean@example.fr")),
    ("Jean Dupont <jean.dupont@example.fr>", ("Jean Dupont", "jean.dupont@example.fr")),
    ("Jean \t  Dupont<J.Dupont@Example.FR>", ("Jean Dupont", "J.Dupont@Example.FR")),
    ('"Dupont, Jean" <jean@example.fr>', ("Dupont, Jean", "jean@example.fr")),
    ('"" <jean@example.fr>', ("", "jean@example.fr")),
    ("José Müller <jm@example.de>", ("José Müller", "jm@example.de")),
    ("=?utf-8?q?Jos=C3=A9?= <j@example.fr>", ("=?utf-8?q?Jos=C3=A9?=", "j@example.fr")),
])
def test_the_plain_shapes_take_the_fast_path_with_the_stdlibs_answer(value: str, expected: tuple[str, str]) -> None:
    assert simple_address(value) == expected
    assert getaddresses([value]) == [expected] and parseaddr(value) == expected


@pytest.mark.parametrize("value", [
    "Jean.Dupont <j@example.fr>",  # obsolete phrase with a dot
    'Jean "the" Dupont <j@example.fr>',  # words and a quoted string mixed
    '"Jean \\"J\\" Dupont" <j@example.fr>',  # escapes
    "j@example.fr (Jean Dupont)",  # a comment
    "Jean Dupont <j@example.fr>, other@example.fr",  # two addresses
    "a..b@example.fr", "j@example.fr.", "j@.example.fr", "j@[192.0.2.1]",
    "<@relay.example:j@example.fr>",  # a route
    "Jean\r\n Dupont <j@example.fr>",  # folded
    "undisclosed-recipients:;", "", "   ", "<>", "Jean Dupont",
    "j@example.fr <k@example.fr>", "Jean <j@example.fr> trailing",
])
def test_anything_else_is_left_to_the_stdlib(value: str) -> None:
    assert simple_address(value) is None


_PIECES = st.sampled_from([
    "a", "Jean", "Dupont", "é", "\u00a0", "\u3000", "\udce9", " ", "\t", "\r\n ", "\n", "\x00", "\x7f",
    "<", ">", "@", ".", ",", ";", ":", '"', "\\", "(", ")", "[", "]", "=?utf-8?q?x?=", "j@x.fr",
    "<j@x.fr>", "j.d@ex-ample.fr", "-", "_", "'", "+", "!", "#", "%", "`", "~", "|",
])


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_generated_values_agree_with_the_stdlib(value: str) -> None:
    assert agrees(value), (value, simple_address(value), getaddresses([value]), parseaddr(value))


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(name=st.text(max_size=20), local=st.from_regex(r"[A-Za-z0-9.+_-]{1,12}", fullmatch=True),
       domain=st.from_regex(r"[A-Za-z0-9.-]{1,15}", fullmatch=True), quoted=st.booleans())
def test_generated_name_and_address_pairs_agree_with_the_stdlib(name: str, local: str, domain: str,
                                                                 quoted: bool) -> None:
    value = f'"{name}" <{local}@{domain}>' if quoted else f"{name} <{local}@{domain}>"
    assert agrees(value), (value, simple_address(value), getaddresses([value]))


def _corpus_values() -> Iterator[str]:
    for root in CORPORA:
        for path in sorted(Path(root).rglob("*")):
            if not path.is_file() or path.stat().st_size > 2_000_000:
                continue
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
            for name in ("From", "Sender", "Reply-To", "To", "Cc", "Return-Path"):
                for value in msg.get_all(name, []):
                    yield parsing._raw(value)  # noqa: SLF001 - what the parser hands the address parser
                    yield classify._decode(value)  # noqa: SLF001 - what the classifier hands it


@pytest.mark.slow
def test_every_address_header_of_the_corpora_agrees_with_the_stdlib() -> None:
    values = list(_corpus_values())
    assert len(values) > 1000
    fast = [v for v in values if simple_address(v) is not None]
    assert len(fast) > len(values) // 2  # the fast path is the usual path
    assert [v for v in values if not agrees(v)] == []
