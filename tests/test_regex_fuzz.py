"""Every regular expression that reads a mail, on adversarial text, under a time limit.

One mail used to freeze the daemon: `'123 ' * 32000` in a body cost 38 s of CPU in
the amount extractor (its cost grew with the square of the length), and `/healthz`
and new SMTP sessions timed out meanwhile (issue #20, item 2). This test runs every
pattern of the modules that read a mail's text — found by walking the modules'
globals and by reading their source, so a new regex is in it without anyone adding
it — over repeated tokens (digit groups, long digit runs, unbalanced quotes, `>`
lines, the pattern's own words…), and fails on any whose time grows faster than the
text. Then the public functions run on 1 MB lines under a time limit.

A regex built at run time from values the source does not show (configured keywords,
a MIME boundary) must be listed in `BUILT_AT_RUN_TIME` with how this test reaches it;
an unlisted one fails `test_every_regex_of_the_mail_modules_is_covered`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import SHIPPED

MODULES = ["mailbot.mail.extract", "mailbot.mail.classify", "mailbot.mail.parsing", "mailbot.mail.quotes",
           "mailbot.mail.masking", "mailbot.mail.authresults", "mailbot.mail.routing", "mailbot.mail.reflection"]
# (module, function) -> how this test reaches the patterns that function compiles at run time.
BUILT_AT_RUN_TIME = {
    ("mailbot.mail.extract", "_phrase"): "keyword phrases: every keyword of the shipped config (test below)",
    ("mailbot.mail.classify", "_ignorecase_alternation"): "its results are module globals",
    ("mailbot.mail.quotes", "_rule"): "its results are the module global _ATTRIBUTIONS",
    ("mailbot.mail.parsing", "_boundary_re"): "MIME boundaries (test below)",
}
RE_FUNCTIONS = {"compile", "search", "match", "fullmatch", "sub", "subn", "findall", "finditer", "split"}

SIZE = 2_000  # characters of each adversarial text in the sweep
TINY = 250  # characters of the first look at each text
SLOW = 0.01  # seconds: below this at SIZE, linear (a square costs more: a step is over 10 ns)
GROWTH = 3.2  # doubling the text may multiply the time by at most this (linear: 2, square: 4)

TOKENS = [
    "123 ", "1", "1 ", "1.", "1,", "1, ", "12/", "12-", "1-", "12.34 ", "1,23 ", "12 34 ", "1 €", "€1", "€ 1 ",
    "1 eur ", "eur ", "+33 ", "0", "00", "4111 ", "fr76 ", "FR76 ", "a", "a ", "A ", "a.", "ab.", "a-", "a, ",
    "a.b ", "a 1 ", "1 a ", "é", "É ", "\u00a0", " ", "  ", "\n", "\r\n", "\n\n", "\t", "'", '"', "«", "`", "<",
    ">", "> ", "\n>", ">\n", "\n> ", "@", "a@", "a@b.", "<a@b>", "=", "=?", "?=", "=?utf-8?q?", "-", "--",
    "-- ", "_", "(", ")", "[", "]", "*", "#", ":", ";", "/", "\\", "+", "|", "http://", "www.", "le ", "Le ",
    "on ", "de ", "du ", "re: ", "Re: ", "fw: ", "n°", "ref ", "client ", "a écrit ", "wrote ", "from: ",
    "From: ", "le 1 ", "sent from ", "envoyé de ",
]


SEARCHING = {"search", "finditer", "findall", "sub", "subn", "split"}


@dataclass(frozen=True)
class Found:
    """One pattern, where it comes from (for the failure message), and how the code runs
    it: `match`/`fullmatch` only try the start of the text, the others every position."""

    pattern: re.Pattern[Any]
    where: str
    methods: frozenset[str] = frozenset({"search"})


def _globals_patterns(module: ModuleType) -> Iterator[Found]:
    """The compiled patterns among the module's globals, also inside containers."""
    seen: set[int] = set()

    def walk(obj: object, name: str, depth: int) -> Iterator[Found]:
        if id(obj) in seen or depth > 5:
            return
        seen.add(id(obj))
        if isinstance(obj, re.Pattern):
            yield Found(obj, name)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(v, f"{name}[{k!r}]", depth + 1)
        elif isinstance(obj, list | tuple | set | frozenset):
            for i, v in enumerate(obj):
                yield from walk(v, f"{name}[{i}]", depth + 1)

    for name, value in vars(module).items():
        if not name.startswith("__"):
            for found in walk(value, f"{module.__name__}.{name}", 0):
                yield Found(found.pattern, found.where, _methods_used(name) if found.where.endswith(name)
                            else found.methods)


def _methods_used(name: str) -> frozenset[str]:
    """How the mail modules call the global pattern `name` (`_X.match(…)`, `_X.finditer(…)`)."""
    used = {m for source in _SOURCES.values() for m in re.findall(rf"\b{re.escape(name)}\.(\w+)\(", source)}
    used &= SEARCHING | {"match", "fullmatch"}
    return frozenset(used or {"search"})  # passed around under another name: assume the worst


def _re_calls(module: ModuleType) -> Iterator[tuple[ast.Call, str | None]]:
    """Every `re.<function>(…)` call of the module's source, with its enclosing function."""
    tree = ast.parse(inspect.getsource(module))

    def visit(node: ast.AST, function: str | None) -> Iterator[tuple[ast.Call, str | None]]:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and isinstance(child.func.value, ast.Name) and child.func.value.id == "re"
                    and child.func.attr in RE_FUNCTIONS):
                yield child, function
            yield from visit(child, inner)

    yield from visit(tree, None)


def _flags(call: ast.Call, module: ModuleType) -> int:
    """The flags argument of a constant-pattern call, evaluated in the module (e.g. re.I | re.M)."""
    position = {"compile": 1, "search": 2, "match": 2, "fullmatch": 2, "findall": 2, "finditer": 2,
                "split": 3, "sub": 4, "subn": 4}[call.func.attr]  # type: ignore[attr-defined]
    node = next((k.value for k in call.keywords if k.arg == "flags"), None)
    if node is None and len(call.args) > position:
        node = call.args[position]
    return eval(compile(ast.Expression(node), "<flags>", "eval"), vars(module)) if node is not None else 0  # noqa: S307


def _source_patterns(module: ModuleType) -> Iterator[Found]:
    """The constant patterns written inside functions (`re.search(r"…", text)`)."""
    for call, function in _re_calls(module):
        arg = call.args[0] if call.args else None
        if function is not None and isinstance(arg, ast.Constant) and isinstance(arg.value, str | bytes):
            method = call.func.attr  # type: ignore[attr-defined]
            yield Found(re.compile(arg.value, _flags(call, module)), f"{module.__name__}.{function} line "
                        f"{call.lineno}", frozenset({"search" if method == "compile" else method}))


_SOURCES = {name: inspect.getsource(importlib.import_module(name)) for name in MODULES}


def all_patterns() -> list[Found]:
    found: dict[tuple[object, int], Found] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for f in (*_globals_patterns(module), *_source_patterns(module)):
            key = (f.pattern.pattern, f.pattern.flags)
            if key in found:  # the same pattern run two ways: test both
                f = Found(f.pattern, found[key].where, found[key].methods | f.methods)
            found[key] = f
    return list(found.values())


def test_every_regex_of_the_mail_modules_is_covered() -> None:
    """A pattern compiled inside a function from a value the source does not show is not
    in the sweep by itself: it must be listed in BUILT_AT_RUN_TIME with how it is reached."""
    unlisted = []
    for name in MODULES:
        module = importlib.import_module(name)
        for call, function in _re_calls(module):
            arg = call.args[0] if call.args else None
            constant = isinstance(arg, ast.Constant)
            if function is not None and not constant and (name, function) not in BUILT_AT_RUN_TIME:
                unlisted.append(f"{name}.{function} line {call.lineno}")
    assert not unlisted, f"regexes built at run time that this test does not reach: {unlisted}"
    assert len(all_patterns()) > 80  # the walk finds them (at the time of writing: about 110)


FILLERS = [" ", "\n", "\t", "a", "1", ".", "@", "-", ":", "'"]


def _texts(pattern: re.Pattern[Any], size: int) -> Iterator[tuple[str, Any]]:
    """Adversarial texts of about `size` characters: each token repeated; the pattern's
    own words repeated; and each phrase of the pattern followed by a run of one filler
    (a keyword whose tail backtracks over what follows it)."""
    source = pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode("latin-1")
    words = list(dict.fromkeys(re.findall(r"[A-Za-zÀ-ÿ]{2,}", source)))[:12]
    phrases = list(dict.fromkeys(re.findall(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ' -]{2,40}", source)))[:8]
    texts: dict[str, str] = {}
    for token in (*TOKENS, *words, *(w + " " for w in words)):
        texts.setdefault(repr(token) + " repeated", token * (size // len(token) + 1))
    for phrase in phrases:
        for tail in ("", ":", ": "):
            for filler in FILLERS:
                texts.setdefault(f"{phrase + tail!r} then {filler!r} repeated", phrase + tail + filler * size)
            for filler in (" ", "\n", "a"):
                unit = phrase + tail + filler * 8
                texts.setdefault(f"{unit!r} repeated", unit * (size // len(unit) + 1))
        for filler in (" ", "\n"):  # after a number, as in addresses and amounts
            texts.setdefault(f"'1 ' {phrase!r} then {filler!r} repeated", "1 " + phrase + filler * size)
    for what, text in texts.items():
        yield what, text.encode("utf-8") if isinstance(pattern.pattern, bytes) else text


def _cost(found: Found, text: Any) -> float:
    """CPU seconds to run the pattern on the text as the code does."""
    pattern = found.pattern
    start = time.process_time()
    if found.methods & SEARCHING:
        for _ in pattern.finditer(text):
            pass
    if "match" in found.methods:
        pattern.match(text)
    if "fullmatch" in found.methods:
        pattern.fullmatch(text)
    return time.process_time() - start


def _superlinear(found: Found, text: Any) -> str | None:
    """Why the pattern is not linear on this text, or None. A first look at a short
    piece of it: a pattern whose cost grows with the cube of the length would take
    hours on the whole."""
    piece = text[:TINY]
    if (tiny := _cost(found, piece)) > SLOW:
        return f"{tiny:.2f} s on {len(piece)} characters"
    small = _cost(found, text)
    if small < SLOW:
        return None
    if small > 1.0:
        return f"{small:.2f} s on {len(text)} characters"
    small = min(small, _cost(found, text))
    big = min(_cost(found, text + text), _cost(found, text + text))
    if big > GROWTH * small:
        return f"{small:.3f} s on {len(text)} characters, {big:.3f} s on twice as many"
    return None


@pytest.mark.slow  # generated runs: left out by `make test-fast`
def test_no_regex_of_the_mail_modules_backtracks_without_bound() -> None:
    slow = []
    for found in all_patterns():
        for what, text in _texts(found.pattern, SIZE):
            why = _superlinear(found, text)
            if why:
                slow.append(f"{found.where} /{found.pattern.pattern!r}/ on {what}: {why}")
    assert not slow, "\n".join(slow)


def test_the_patterns_built_at_run_time_are_linear_too() -> None:
    """Every keyword of the shipped config (categories, urgency) as the extractor compiles
    it, and MIME boundary patterns for odd boundaries."""
    from mailbot.mail import extract, parsing

    keywords = {kw for brand in SHIPPED["brands"] for kw in brand.get("urgent_keywords", [])}
    keywords |= {kw for brand in SHIPPED["brands"] for c in brand.get("categories", []) for kw in c["keywords"]}
    patterns = [p.pattern for p in (extract._keyword_phrase(kw) for kw in keywords) if p.pattern is not None]
    for boundary in ("b", "-", "=_", "--=_b", " ", "a" * 70, "1 2"):
        head = message_from_bytes(f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode())
        patterns.append(parsing._boundary_re(head))
    slow = []
    for pattern in filter(None, patterns):
        for what, text in _texts(pattern, SIZE):
            why = _superlinear(Found(pattern, "built at run time"), text)
            if why:
                slow.append(f"/{pattern.pattern!r}/ on {what}: {why}")
    assert not slow, "\n".join(slow)


# --------------------------------------------------------------------------- 1 MB lines

MEGA = 1_000_000
LINES = ["123 ", "1", '"', "'", "> ", "a ", "=?", "<", "le 12/11/2026 ", "1 250,00 ", "fr76 ", "-- "]
LIMIT = 5.0  # seconds of CPU per function and text (linear code takes well under a second)


def _mega(token: str) -> str:
    return token * (MEGA // len(token))


@pytest.mark.parametrize("token", LINES)
def test_the_functions_that_read_a_mail_take_a_1_mb_line_in_bounded_time(token: str) -> None:
    from mailbot.mail.classify import classify
    from mailbot.mail.extract import extract
    from mailbot.mail.masking import stored_body
    from mailbot.mail.parsing import parse
    from mailbot.mail.quotes import split_commands, strip_reply

    line = _mega(token)
    raw = (b"From: a@example.org\r\nTo: support@kalra-plus.com\r\nSubject: " + line[:2000].encode()
           + b"\r\nMessage-ID: <x@example.org>\r\n\r\n" + line.encode())
    calls = {
        "extract": lambda: extract(line, subject=line[:2000], sent_at=datetime(2026, 11, 23, tzinfo=UTC),
                                   urgent_keywords=["fraude", "opération non reconnue"],
                                   categories=[("transaction", ["virement", "prélèvement"])]),
        "stored_body": lambda: stored_body(line),
        "strip_reply": lambda: strip_reply(line, None),
        "split_commands": lambda: split_commands(line),
        "parse": lambda: parse(raw),
        "classify": lambda: classify(message_from_bytes(raw), envelope_from="a@example.org",
                                     own_addresses=frozenset({"support@kalra-plus.com"})),
    }
    for name, call in calls.items():
        start = time.process_time()
        call()
        spent = time.process_time() - start
        assert spent < LIMIT, f"{name} took {spent:.1f} s on {token!r} × {MEGA // len(token)}"
