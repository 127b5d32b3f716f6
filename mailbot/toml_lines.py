"""Where each key of a TOML document is written: key path -> line number.

`tomllib` gives values without positions, and config errors must name the line.
`KeyLines(text)` scans the text once (after tomllib accepted it) and records the
line of every table header, key, array element and inline-table key, under the
same paths the config schema reports: ("brands", 1, "sla", "tiers", "simple").
`line(path)` answers for the path, or for its closest written ancestor (a missing
key is reported at its table's header).

It reads only what it needs: headers (`[a.b]`, `[[a.b]]`, quoted and dotted
parts), `key = value` with dotted keys, and values' extents (strings of the four
kinds, arrays and inline tables, comments). Anything it cannot follow ends the
scan: the lines found so far stay, and `line` falls back to an ancestor.
"""

from __future__ import annotations

from collections.abc import Sequence

Path = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _Stop(Exception):
    """The scanner met something it does not follow."""


class KeyLines:
    """The line (1-based) of each key path of a TOML text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lineno = 1
        self.lines: dict[Path, int] = {}
        self._arrays: dict[Path, int] = {}  # array of tables -> index of its last table
        try:
            self._document()
        except (_Stop, IndexError):
            pass

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of `path`, else of its closest ancestor written in the text."""
        path = tuple(path)
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None

    # -- the document ------------------------------------------------------------------
    def _document(self) -> None:
        table: Path = ()
        while True:
            self._blank(newlines=True)
            if self.pos >= len(self.text):
                return
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                table = self._array_table(self._key())
                self._expect("]]")
            elif self.text[self.pos] == "[":
                self.pos += 1
                table = self._resolve(self._key())
                self._mark(table)
                self._expect("]")
            else:
                self._key_value(table)

    def _resolve(self, parts: list[str]) -> Path:
        """A header's dotted key as a path: arrays of tables get their current index."""
        path: Path = ()
        for part in parts:
            path += (part,)
            if path in self._arrays:
                path += (self._arrays[path],)
        return path

    def _array_table(self, parts: list[str]) -> Path:
        array = self._resolve(parts[:-1]) + (parts[-1],)
        index = self._arrays.get(array, -1) + 1
        self._arrays[array] = index
        self._mark(array)
        self._mark(array + (index,))
        return array + (index,)

    def _key_value(self, table: Path) -> None:
        path = table + tuple(self._key())
        self._mark(path)
        self._expect("=")
        self._value(path)

    def _mark(self, path: Path) -> None:
        self.lines.setdefault(path, self.lineno)

    # -- keys ----------------------------------------------------------------------------
    def _key(self) -> list[str]:
        parts = []
        while True:
            self._blank()
            parts.append(self._simple_key())
            self._blank()
            if self._peek() != ".":
                return parts
            self.pos += 1

    def _simple_key(self) -> str:
        c = self._peek()
        if c == '"':
            return self._basic_string()
        if c == "'":
            return self._literal_string()
        start = self.pos
        while self._peek() in _BARE and self._peek():
            self.pos += 1
        if start == self.pos:
            raise _Stop
        return self.text[start:self.pos]

    # -- values --------------------------------------------------------------------------
    def _value(self, path: Path) -> None:
        self._blank()
        c = self._peek()
        if self.text.startswith('"""', self.pos) or self.text.startswith("'''", self.pos):
            self._multiline_string()
        elif c == '"':
            self._basic_string()
        elif c == "'":
            self._literal_string()
        elif c == "[":
            self._array(path)
        elif c == "{":
            self._inline_table(path)
        else:
            while self._peek() and self._peek() not in ",]}#\n":
                self.pos += 1

    def _array(self, path: Path) -> None:
        self.pos += 1
        index = 0
        while True:
            self._blank(newlines=True)
            if self._peek() == "]":
                self.pos += 1
                return
            start = self.pos
            self._mark(path + (index,))
            self._value(path + (index,))
            self._blank(newlines=True)
            if self._peek() == ",":
                self.pos += 1
                index += 1
            elif self.pos == start or self._peek() != "]":
                raise _Stop

    def _inline_table(self, path: Path) -> None:
        self.pos += 1
        while True:
            self._blank()
            if self._peek() == "}":
                self.pos += 1
                return
            self._key_value(path)
            self._blank()
            if self._peek() == ",":
                self.pos += 1

    # -- strings ---------------------------------------------------------------------------
    def _basic_string(self) -> str:
        self.pos += 1
        out = []
        while (c := self.text[self.pos]) != '"':
            if c == "\\":
                nxt = self.text[self.pos + 1]
                if nxt in "uU":
                    width = 4 if nxt == "u" else 8
                    out.append(chr(int(self.text[self.pos + 2:self.pos + 2 + width], 16)))
                    self.pos += 2 + width
                    continue
                out.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            if c == "\n":
                raise _Stop
            out.append(c)
            self.pos += 1
        self.pos += 1
        return "".join(out)

    def _literal_string(self) -> str:
        end = self.text.index("'", self.pos + 1)
        value = self.text[self.pos + 1:end]
        self.pos = end + 1
        return value

    def _multiline_string(self) -> None:
        quote = self.text[self.pos:self.pos + 3]
        self.pos += 3
        while True:
            if quote == '"""' and self.text[self.pos] == "\\":
                self._advance(2)
                continue
            if self.text.startswith(quote, self.pos):
                self.pos += 3
                while self._peek() == quote[0]:  # up to two quotes may end the content
                    self.pos += 1
                return
            self._advance(1)

    # -- blanks ----------------------------------------------------------------------------
    def _blank(self, newlines: bool = False) -> None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._advance(1)
            elif c == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def _advance(self, n: int) -> None:
        self.lineno += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _expect(self, token: str) -> None:
        self._blank()
        if not self.text.startswith(token, self.pos):
            raise _Stop
        self.pos += len(token)
