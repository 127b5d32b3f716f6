"""Plain text from HTML mail bodies, with the standard library's HTML parser."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

# Larger bodies are cut: the parser is linear but a complaint is never this long.
MAX_HTML_CHARS = 2_000_000

_SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript"})
_BLOCKS = frozenset(
    {
        "br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
        "ul", "ol", "table", "blockquote", "pre", "hr", "section", "article",
        "header", "footer", "address", "dd", "dt", "dl", "form", "fieldset",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_SPACES_RE = re.compile(r"[ \t\r\f\v]+")
_BLANK_RUN_RE = re.compile(r"\n{3,}")
_TAG_RE = re.compile(r"<[^<>]{0,2000}>")
# Bounded attribute run that cannot cross another '<': linear over the document.
# Names may carry a namespace prefix and dashes (Office's <o:p>, <v:shape>, custom elements).
_SIMPLE_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:._-]{0,63})((?:[\s/][^<>]{0,4000})?)>")


class _TextCollector(HTMLParser):
    """Collects the visible text, turning block elements into line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIPPED:
            self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skip_depth = max(self.skip_depth - 1, 0)
        else:
            self._break(tag)

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.parts.append(data)

    def _open(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skip_depth += 1
        else:
            self._break(tag)

    def _break(self, tag: str) -> None:
        if self.skip_depth:
            return
        if tag in _BLOCKS:
            self.parts.append("\n")
        elif tag in _CELLS:
            self.parts.append(" ")


def normalise_whitespace(text: str) -> str:
    """Collapse runs of spaces, trim lines, keep at most one blank line in a row."""
    text = text.replace("\u00a0", " ")
    lines = [_SPACES_RE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUN_RE.sub("\n\n", "\n".join(lines)).strip()


def _tag_at(html: str, i: int) -> tuple[str, int] | None:
    """A start/end tag at ``i``, rewritten without attributes, and its end index."""
    match = _SIMPLE_TAG_RE.match(html, i)
    if match is None:
        return None
    slash, name, rest = match.groups()
    closing = "/" if rest.endswith("/") and not slash else ""
    return f"<{slash}{name.lower()}{closing}>", match.end()


class _Finder:
    """``str.find`` with a memory of misses, so repeated searches stay linear."""

    def __init__(self, html: str, needle: str) -> None:
        self.html, self.needle, self.found = html, needle, -2

    def after(self, i: int) -> int:
        if self.found == -1 or self.found >= i:
            return self.found
        self.found = self.html.find(self.needle, i)
        return self.found


def sanitise(html: str) -> str:
    """Rewrite ``html`` so that every ``<`` left opens a plain, attribute-free tag.

    Comments, doctypes and processing instructions are dropped; a stray ``<`` becomes
    ``&lt;``. The stdlib parser is then linear on what it is fed (on its own it
    is quadratic on unclosed comments and attributes).
    """
    out: list[str] = []
    comment_end, gt = _Finder(html, "-->"), _Finder(html, ">")
    pos = 0
    while (i := html.find("<", pos)) != -1:
        out.append(html[pos:i])
        tag = _tag_at(html, i)
        if tag is not None:
            out.append(tag[0])
            pos = tag[1]
        elif html.startswith("<!--", i):
            end = comment_end.after(i + 4)
            pos = len(html) if end == -1 else end + 3
        elif html.startswith(("<!", "<?"), i):
            end = gt.after(i + 2)
            pos = len(html) if end == -1 else end + 1
        else:
            out.append("&lt;")
            pos = i + 1
    out.append(html[pos:])
    return "".join(out)


def _parse(html: str) -> str:
    collector = _TextCollector()
    collector.feed(sanitise(html))
    collector.close()
    return "".join(collector.parts)


def _fallback(html: str) -> str:
    """Crude tag stripping, used only if the parser fails."""
    return unescape(_TAG_RE.sub(" ", html))


def html_to_text(html: str) -> str:
    """Visible text of ``html``: no scripts/styles/head, blocks as lines, entities decoded.

    Never raises; link text is kept, URLs are not.
    """
    html = html[:MAX_HTML_CHARS]
    try:
        text = _parse(html)
    except Exception:  # the parser is lenient, but a body must never sink ingestion
        text = _fallback(html)
    return normalise_whitespace(text)
