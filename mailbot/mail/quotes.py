"""The new text of an agent's reply: quoted history, reply headers and signatures cut.

Agents answer cases from their own mail client; before the answer is relayed to
the customer only what the agent typed must remain. The rules here are line
based and linear in the size of the input:

* a *hard cut* ends the new text: an Outlook-style header block ("From: … Sent:
  … To: … Subject:", "De : … Envoyé : … À : … Objet :", German, Russian, …), a
  "-----Original Message-----" / "-------- Message d'origine --------" line, or
  an attribution line ("On … wrote:", "Le … a écrit :", …) that is not followed
  by a ``>`` quoted block;
* an attribution line followed by a ``>`` block, and any ``>`` line, are
  dropped but the text after them is kept (bottom-posted and inline replies);
* a "-- " signature block and "Sent from my iPhone" / "Envoyé de mon iPhone"
  style lines end the kept text; closings such as "Cordialement,\\nMarie" stay.

HTML-only replies are cut at the quote container (blockquote, gmail_quote,
divRplyFwdMsg, OLK_SRC_BODY_SECTION, moz-cite-prefix, …) before being turned
into text, then go through the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape

__all__ = ["MAX_CHARS", "fold_quotes", "own_closing", "own_greeting", "split_commands", "strip_reply"]

#: Work is capped: longer inputs are cut to this many characters first.
MAX_CHARS = 1_000_000
#: Attribution lines ("On … wrote:") may be wrapped over this many lines.
_MAX_ATTRIBUTION_LINES = 3
_MAX_ATTRIBUTION_CHARS = 400
#: Lines after a "From:" line searched for the rest of a header block.
_HEADER_WINDOW = 8
#: A "--" delimiter (without the RFC 3676 trailing space) only starts a
#: signature if at most this many non-blank lines follow it.
_LOOSE_SIGNATURE_LINES = 8

# --- attribution lines ("On … wrote:") ------------------------------------------

_INVISIBLE = " \t\u00a0\u202f\u2007\u200b\u200e\u200f\ufeff"
_SPACES = re.compile(rf"[\s{_INVISIBLE}]+")
# A time, a year or an address: every mail client puts one in its attribution.
_EVIDENCE = re.compile(r"\d{1,2}[:h]\d{2}|\b(?:19|20)\d{2}\b|@")
_WEEKDAY = (
    r"(?:(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?|lun(?:di)?|"
    r"mar(?:di)?|mer(?:credi)?|jeu(?:di)?|ven(?:dredi)?|sam(?:edi)?|dim(?:anche)?|"
    r"пн|вт|ср|чт|пт|сб|вс)\.?,?"
)
_DATE = r"\b(?:19|20)\d{2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2}\b"
_TIME = r"\d{1,2}:\d{2}"


def _rule(opening: str, *required: str) -> tuple[re.Pattern[str], list[re.Pattern[str]]]:
    """An attribution rule: a pattern matched at the start, patterns searched anywhere.

    Kept as separate simple patterns (no ``.*`` between them) so matching stays
    linear in the length of the line.
    """
    flags = re.IGNORECASE
    return re.compile(opening, flags), [re.compile(p, flags) for p in required]


# The attribution, whitespace collapsed, must also end with ":".
_ATTRIBUTIONS = [
    _rule(r"[- ]{0,8}(?:on|at) ", r" (?:wrote|writes|said) ?:$"),
    _rule(r"[- ]{0,8}le ", r" (?:a écrit|a ecrit|écrit) ?:$"),
    _rule(r"[- ]{0,8}am ", r" (?:schrieb|geschrieben)\b"),
    _rule(r"[- ]{0,8}el ", r" escribió ?:$"),
    _rule(r"[- ]{0,8}il ", r" ha scritto ?:$"),
    _rule(r"[- ]{0,8}op ", r" schreef\b"),
    _rule(r"[- ]{0,8}em ", r" escreveu ?:$"),
    _rule(r"[- ]{0,8}den ", r" skrev\b"),
    # mail.ru, Yandex, Android, old Gmail: "<date> <time>, Name <addr>:" variants.
    _rule(rf"(?:\d|{_WEEKDAY} )", _DATE, _TIME, r"@|написал|пишет|wrote|écrit|schrieb| от "),
]


def _is_attribution(joined: str) -> bool:
    if not joined.endswith(":") or not _EVIDENCE.search(joined):
        return False
    return any(
        opening.match(joined) and all(r.search(joined) for r in required)
        for opening, required in _ATTRIBUTIONS
    )


# --- header blocks and separators ---------------------------------------------

_FROM_FIELDS = r"from|de|von|van|da|od|från|fra|от|expéditeur"
_OTHER_FIELDS = (
    r"sent|date|to|cc|bcc|subject|reply-to|envoyé|envoyé le|à|a|objet|"
    r"gesendet|an|betreff|datum|kopie|отправлено|кому|тема|дата|копия|"
    r"enviado|para|asunto|fecha|inviato|oggetto|data|verzonden|aan|onderwerp|"
    r"skickat|till|ämne|sendt|til|emne"
)
_FIELD = re.compile(
    rf"^\s*(?:\*\s*)?(?P<name>{_FROM_FIELDS}|{_OTHER_FIELDS})\s?\*?\s?:(?:\s|\*|$)",
    re.IGNORECASE,
)
_FROM_NAME = re.compile(rf"^(?:{_FROM_FIELDS})$", re.IGNORECASE)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:original message|message d'origine|message d’origine|"
    r"message original|mail original|ursprüngliche nachricht|originalnachricht|"
    r"mensaje original|messaggio originale|oorspronkelijk bericht|"
    r"исходное сообщение)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{20,}\s*$")
_ANY_FIELD = re.compile(r"^\s*(?:\*\s*)?[^\s:]{1,20}(?:\s[^\s:]{1,20})?\s?\*?\s?:")
_RULE = re.compile(r"^[\s\-_=*~]*$")

# --- signatures ------------------------------------------------------------------

_SENT_FROM = re.compile(
    r"^\s*(?:sent from my\s|sent from (?:outlook|mail|yahoo|gmail|samsung)|"
    r"sent with\s|sent via\s|sent from\s.{1,60}(?:iphone|ipad|android|mobile|phone)|"
    r"get outlook for\s|"
    r"envoyé de mon\s|envoyé depuis\s|envoyé à partir de\s|envoye de mon\s|"
    r"obtenir outlook pour\s|téléchargez outlook pour\s|"
    r"von meinem\s.{1,40}\sgesendet|gesendet von meinem\s|"
    r"enviado desde mi\s|inviato da(?:l mio)?\s|verzonden vanaf mijn\s|"
    r"отправлено с\s|отправлено из\s)",
    re.IGNORECASE,
)
#: A "Sent from my …" line is a signature only if short, unpunctuated and near the end
#: (so prose such as "Sent from my office, the letter …" is kept).
_MAX_SENT_FROM_CHARS = 80
_MAX_LINES_AFTER_SENT_FROM = 3

# --- HTML -------------------------------------------------------------------------

_HTML_QUOTE_MARKERS = re.compile(
    r"<blockquote\b"
    r"|\bclass\s*=\s*[\"']?[^\"'>]{0,200}\b(?:gmail_quote|moz-cite-prefix|yahoo_quoted|"
    r"protonmail_quote|zmail_extra|gmail_signature_prefix|moz-signature)\b"
    r"|\bid\s*=\s*[\"']?(?:divRplyFwdMsg|OLK_SRC_BODY_SECTION|appendonsend|"
    r"mail-editor-reference-message-container|isForwardContent|reply-intro)\b",
    re.IGNORECASE,
)
# Office namespaced tags (<o:p>, <v:shape …>) carry no text; some parsers print them.
_HTML_NAMESPACED_TAG = re.compile(r"</?[A-Za-z]{1,10}:[A-Za-z][^<>]{0,4000}>")
_HTML_TAG = re.compile(r"<[^<>]{0,4000}>")
_HTML_BREAK = re.compile(r"<\s*(?:br|/?p|/?div|/?tr|/?li|/?h\d|hr)\b[^<>]{0,4000}>", re.IGNORECASE)
_BLANK_RUN = re.compile(r"\n{3,}")
_HTML_HIDDEN = re.compile(r"<(script|style|head)\b", re.IGNORECASE)


def _drop_hidden(html: str) -> str:
    """``html`` without script/style/head elements (an unclosed one runs to the end)."""
    lower = html.lower()
    out: list[str] = []
    pos = 0
    while (match := _HTML_HIDDEN.search(html, pos)) is not None:
        out.append(html[pos : match.start()])
        close = lower.find(f"</{match.group(1).lower()}", match.end())
        if close == -1:
            return "".join(out)
        end = html.find(">", close)
        pos = len(html) if end == -1 else end + 1
    out.append(html[pos:])
    return "".join(out)


def _fallback_html_to_text(html: str) -> str:
    """Crude HTML to text, used only if ``mailbot.mail.htmltext`` is not available."""
    html = _drop_hidden(html)
    html = _HTML_BREAK.sub("\n", html)
    text = unescape(_HTML_TAG.sub("", html)).replace("\u00a0", " ")
    return _BLANK_RUN.sub("\n\n", "\n".join(line.strip() for line in text.split("\n"))).strip()


def _load_html_to_text() -> Callable[[str], str]:
    try:
        from mailbot.mail.htmltext import html_to_text
    except ImportError:  # pragma: no cover - the module is being written separately
        return _fallback_html_to_text
    return html_to_text


# --- line classification --------------------------------------------------------


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _is_blank(line: str) -> bool:
    return not line.strip()


def _flat(line: str) -> str:
    """The line with every kind of space collapsed to one ASCII space."""
    return _SPACES.sub(" ", line).strip()


def _attribution_start(lines: list[str], end: int) -> int | None:
    """Index of the first line of an attribution ending at line ``end``, if any.

    The shortest span of up to three non-blank lines wins, so a wrapped Gmail
    header ("On …, Marie <" / "m@x> wrote:") is found without eating the
    reply line above it.
    """
    if len(lines[end]) > 2 * _MAX_ATTRIBUTION_CHARS or not lines[end].rstrip(_INVISIBLE).endswith(
        ":"
    ):
        return None
    last = _flat(lines[end])
    if not last.endswith(":") or _is_quoted(last):
        return None
    parts: list[str] = []
    for start in range(end, max(end - _MAX_ATTRIBUTION_LINES, -1), -1):
        if len(lines[start]) > 2 * _MAX_ATTRIBUTION_CHARS:
            return None
        line = _flat(lines[start])
        if not line or _is_quoted(line):
            return None
        parts.insert(0, line)
        joined = " ".join(parts)
        if len(joined) > _MAX_ATTRIBUTION_CHARS:
            return None
        if _is_attribution(joined):
            return start
    return None


def _attributions(lines: list[str]) -> dict[int, int]:
    """Map from the first line of each attribution to its last line."""
    found: dict[int, int] = {}
    for end in range(len(lines)):
        start = _attribution_start(lines, end)
        if start is not None and start not in found:
            found[start] = end
    return found


def _field_name(line: str) -> str | None:
    """The header field a line starts with ("from", "envoyé", …), lower-cased."""
    if ":" not in line:
        return None
    match = _FIELD.match(line)
    return match.group("name").lower() if match else None


def _is_header_block(fields: list[str | None], i: int) -> bool:
    """Whether an Outlook-style header block ("From: … Sent: … To:") starts at ``i``.

    ``fields`` holds the header field name of every line (or None).
    """
    if fields[i] is None:
        return False
    names = {name for name in fields[i : i + _HEADER_WINDOW] if name is not None}
    return len(names) >= 3 and any(_FROM_NAME.match(name) for name in names)


def _is_outlook_separator(lines: list[str], i: int) -> bool:
    """A line of underscores followed by a "Field:" line (Outlook Web, new Outlook)."""
    if "_" not in lines[i] or not _UNDERSCORES.match(lines[i]):
        return False
    for line in lines[i + 1 : i + 4]:
        if not _is_blank(line):
            return bool(_ANY_FIELD.match(line))
    return False


def _is_hard_cut(lines: list[str], fields: list[str | None], i: int) -> bool:
    """Whether the quoted history starts at line ``i`` with no way back to new text."""
    line = lines[i]
    return (
        _is_header_block(fields, i)
        or ("-" in line and bool(_ORIGINAL_MESSAGE.match(line)))
        or _is_outlook_separator(lines, i)
    )


def _skip_quoted(lines: list[str], i: int) -> int:
    """Index of the first line after the ``>`` block (and blank lines) starting at ``i``."""
    while i < len(lines) and (_is_quoted(lines[i]) or _is_blank(lines[i])):
        i += 1
    return i


def _next_content(lines: list[str], i: int) -> int:
    while i < len(lines) and _is_blank(lines[i]):
        i += 1
    return i


def _drop_quotes(lines: list[str]) -> list[str]:
    """The lines typed by the sender: quotes, attributions and history removed."""
    attributions = _attributions(lines)
    fields = [_field_name(line) for line in lines]
    kept: list[str] = []
    i = 0
    while i < len(lines):
        if i in attributions:
            after = _next_content(lines, attributions[i] + 1)
            if after >= len(lines) or not _is_quoted(lines[after]):
                break  # unquoted history follows (Apple Mail, Outlook HTML as text)
            i = _skip_quoted(lines, after)
            continue
        if _is_quoted(lines[i]):
            i = _skip_quoted(lines, i)
            if kept and kept[-1]:
                kept.append("")  # keep paragraphs around an inline quote apart
            continue
        if _is_hard_cut(lines, fields, i):
            break
        kept.append(lines[i])
        i += 1
    return kept


def _signature_start(lines: list[str]) -> int | None:
    """Index where the signature starts ("-- " block or "Sent from my …" line)."""
    remaining = sum(1 for line in lines if not _is_blank(line))  # non-blank lines from i on
    for i, line in enumerate(lines):
        if not _is_blank(line):
            remaining -= 1
        bare = line.rstrip()
        if line.startswith("-- ") and not bare.strip("-"):
            return i  # the RFC 3676 delimiter "-- "
        if bare == "--" and remaining <= _LOOSE_SIGNATURE_LINES:
            return i
        if _is_sent_from(bare) and remaining <= _MAX_LINES_AFTER_SENT_FROM:
            return i
    return None


def _is_sent_from(line: str) -> bool:
    """A "Sent from my iPhone" / "Envoyé de mon iPhone" / "Get Outlook for iOS" line."""
    return (
        len(line) <= _MAX_SENT_FROM_CHARS
        and not line.endswith((".", "!", "?", ","))
        and bool(_SENT_FROM.match(line))
    )


def _trim(lines: list[str]) -> list[str]:
    """Drop leading blank lines and trailing blank or rule-only lines."""
    start = 0
    while start < len(lines) and _is_blank(lines[start]):
        start += 1
    end = len(lines)
    while end > start and _RULE.match(lines[end - 1]):
        end -= 1
    return lines[start:end]


def _strip_text(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = _drop_quotes(lines)
    cut = _signature_start(kept)
    if cut is not None:
        kept = kept[:cut]
    return "\n".join(line.rstrip() for line in _trim(kept))


def _cut_html(html: str) -> str:
    """The HTML before the first quote container (the tag holding the marker)."""
    match = _HTML_QUOTE_MARKERS.search(html)
    if match is None:
        return html
    tag_start = html.rfind("<", 0, match.start() + 1)
    return html[: tag_start if tag_start >= 0 else match.start()]


def _strip_html(html: str) -> str:
    cut = _HTML_NAMESPACED_TAG.sub("", _cut_html(html[:MAX_CHARS]))
    text = _load_html_to_text()(cut)
    return _strip_text(text)


def strip_reply(text: str, html: str | None = None) -> str:
    """The new text of a reply: quoted history, reply headers and signatures stripped.

    ``text`` is the text/plain body; when it is empty and ``html`` is given, the
    HTML is cut at its quote container and converted to text first. Closings
    ("Cordialement,\\nMarie") are kept; a "-- " block or a "Sent from my
    iPhone" line after them is removed. Leading and trailing blank lines are
    trimmed. Never raises; inputs are capped at :data:`MAX_CHARS` characters.
    """
    try:
        if text and text.strip():
            return _strip_text(text[:MAX_CHARS])
        if html:
            return _strip_html(html)
        return ""
    except Exception:  # a reply must never sink the relay; fall back to the raw text
        return (text or "")[:MAX_CHARS].strip()


def fold_quotes(text: str) -> tuple[str, int]:
    """A received mail's own words (`strip_reply`), and how many non-blank lines of quoted
    history and signature were folded away: 0, and the whole text, when nothing was."""
    kept = strip_reply(text)
    if not kept.strip():
        return text.strip(), 0
    folded = _count_lines(text) - _count_lines(kept)
    return (kept, folded) if folded > 0 else (text.strip(), 0)


def _count_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


_GREETING = re.compile(
    r"^\s*(bonjour|bonsoir|madame|monsieur|mesdames|messieurs|ch[eè]re?s?\b|hello|hi\b|dear\b|good (morning|afternoon|evening))",
    re.IGNORECASE)
_CLOSING = re.compile(
    r"^\s*(cordialement|bien (à|a) vous|bien cordialement|sinc[eè]res salutations|salutations|"
    r"veuillez agr[ée]er|(best|kind|warm) regards|regards|sincerely|yours (sincerely|faithfully|truly)|best wishes)\b",
    re.IGNORECASE)


def own_greeting(text: str) -> bool:
    """The text opens with its own greeting ("Bonjour Madame,", "Dear Mr Smith,")."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return bool(_GREETING.match(first))


def own_closing(text: str) -> bool:
    """The text ends with its own closing ("Cordialement,\nPaul"): one of its last three lines."""
    lines = [line for line in text.splitlines() if line.strip()][-3:]
    return any(_CLOSING.match(line) for line in lines)


# --- agent commands ----------------------------------------------------------------

_COMMAND = re.compile(r"^#[A-Za-z][\w-]*(?:\s.*)?$")


def split_commands(text: str) -> tuple[list[str], str]:
    """Split the ``#command`` lines at the top of a stripped reply from its text.

    Leading blank lines are skipped; the command block ends at the first line
    that is not a command ("#word …"). Returns the stripped command lines and
    the remaining text with its leading and trailing blank lines trimmed.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    commands: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line and not commands:
            i += 1
            continue
        if not _COMMAND.match(line):
            break
        commands.append(line)
        i += 1
    return commands, "\n".join(_trim_rest(lines[i:]))


def _trim_rest(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and _is_blank(lines[start]):
        start += 1
    while end > start and _is_blank(lines[end - 1]):
        end -= 1
    return lines[start:end]
