"""mailbot.mail.mime_boundary: the feedparser's boundary lines matched without a regex per
mail must give exactly what the regex gives, line by line and for whole mails."""

from __future__ import annotations

import email
import email.feedparser
import itertools
import re
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from mailbot.mail import mime_boundary, parsing
from tests.test_corpora import _corpus_mails

SUFFIX = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
SEPARATORS = ["--abc", "--===============5876292057589640428==", "--=_Part_1.2+x/y", "--(weird)*[]?{}|^$.",
              "--a b\tc", "--\\back\\slash", "--é-ünicode", "--"]
PIECES = ["", "--", "-", " ", "\t", "  ", "\r\n", "\r", "\n", "\n\n", "\r\r", "x", "-- ", "\r\n\n", " \n",
          "\t\r\n", "\n\r"]


def pattern(separator: str) -> str:
    """What email.feedparser passes to re.compile for a multipart's boundary."""
    return "(?P<sep>" + re.escape(separator) + SUFFIX


def lines(separator: str) -> Iterator[str]:
    for k in range(4):
        for combo in itertools.product(PIECES, repeat=k):
            for before in ("", "x", " "):
                yield before + separator + "".join(combo)


@pytest.mark.parametrize("separator", SEPARATORS)
def test_the_matcher_agrees_with_the_regex_on_every_line(separator: str) -> None:
    real = re.compile(pattern(separator))
    fast = mime_boundary._FeedparserRe().compile(pattern(separator))  # noqa: SLF001
    assert not isinstance(fast, re.Pattern)  # the template was recognised
    seen = 0
    for line in lines(separator):
        want, got = real.match(line), fast.match(line)
        assert (want is None) == (got is None), repr(line)
        if want is not None:
            assert got is not None
            assert [got.group(g) for g in ("sep", "end", "ws", "linesep")] == \
                [want.group(g) for g in ("sep", "end", "ws", "linesep")], repr(line)
            seen += 1
    assert seen > 10  # matches were compared too, not only misses


def test_other_patterns_get_real_regexes() -> None:
    fake_re = mime_boundary._FeedparserRe()  # noqa: SLF001
    assert isinstance(fake_re.compile(r"\r\n|\r|\n"), re.Pattern)
    assert isinstance(fake_re.compile(pattern("--x"), re.IGNORECASE), re.Pattern)
    assert fake_re.escape("a.b") == re.escape("a.b")  # the rest of `re` is the real one


def test_parsing_installs_it() -> None:
    assert parsing  # imported: mailbot.mail.parsing installs it at import
    assert isinstance(email.feedparser.re, mime_boundary._FeedparserRe)  # noqa: SLF001
    assert isinstance(email.feedparser.NLCRE_eol, mime_boundary.LineEndAtEnd)
    mime_boundary.install()  # twice: still installed, nothing wrapped twice
    assert isinstance(email.feedparser.NLCRE_eol, mime_boundary.LineEndAtEnd)


def test_the_line_end_search_agrees_with_the_regex_on_every_string() -> None:
    """Every string of up to 7 characters from "a", CR and LF (and a long one ending
    each way): the same match, at the same place, as the feedparser's own pattern."""
    real, fast = re.compile(r"(\r\n|\r|\n)\Z"), mime_boundary.LineEndAtEnd()
    texts = ["".join(c) for k in range(8) for c in itertools.product("a\r\n", repeat=k)]
    texts += ["x" * 100_000 + end for end in ("", "\r", "\n", "\r\n", "\n\r", "\r\r\n")]
    for text in texts:
        want, got = real.search(text), fast.search(text)
        assert (want is None) == (got is None), repr(text)
        if want is not None:
            assert got is not None and (got.span(), got.group(0)) == (want.span(), want.group(0)), repr(text)


def tree(msg: Message) -> list[tuple]:
    """Everything the parser decided: structure, headers, payloads, preamble, epilogue, defects."""
    return [(part.get_content_type(), part.items(), part.preamble, part.epilogue,
             [type(d).__name__ for d in part.defects],
             None if part.is_multipart() else part.get_payload())
            for part in msg.walk()]


def test_corpus_mails_parse_to_the_same_tree_either_way() -> None:
    """Every corpus mail (Zammad, Sisimai, talon, CPython's own test mails): the same
    parse tree with the real regexes as with the matcher."""
    files = _corpus_mails()
    multipart = 0
    for path in files:
        raw = Path(path).read_bytes()
        fast = email.message_from_bytes(raw)
        mime_boundary.uninstall()
        try:
            real = email.message_from_bytes(raw)
        finally:
            mime_boundary.install()
        assert tree(fast) == tree(real), path
        multipart += fast.is_multipart()
    assert len(files) > 500 and multipart > 150, (len(files), multipart)


def test_a_multipart_mail_no_longer_pays_for_a_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of it: with unique boundaries (every real mail) the regex path compiles
    one pattern per multipart (~0.15 ms each); with the matcher, none is compiled."""
    mails = [(b"From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/alternative; "
              b"boundary=\"b%d\"\n\n--b%d\nContent-Type: text/plain\n\nhello\n--b%d\n"
              b"Content-Type: text/html\n\n<p>hello</p>\n--b%d--\n") % (i, i, i, i) for i in range(50)]
    boundary_compiles: list[str] = []
    real_compile = re.compile

    def counting(p: str, flags: int = 0) -> re.Pattern[str]:
        if isinstance(p, str) and p.startswith("(?P<sep>"):
            boundary_compiles.append(p)
        return real_compile(p, flags)

    monkeypatch.setattr(re, "compile", counting)
    for raw in mails:
        assert len(email.message_from_bytes(raw).get_payload()) == 2
    assert boundary_compiles == []
    mime_boundary.uninstall()
    try:
        for raw in mails:
            assert len(email.message_from_bytes(raw).get_payload()) == 2
    finally:
        mime_boundary.install()
    assert len(boundary_compiles) == 50  # the stdlib's own path, for comparison
