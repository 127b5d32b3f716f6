"""Attachment names and limits: what is kept, under which name, and why something is dropped."""

from __future__ import annotations

import re
import unicodedata

from mailbot.config import LimitsConfig

_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>:\"|?*\\/]+")
MAX_NAME = 150
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def sanitise_filename(name: str, fallback: str = "attachment") -> str:
    """No path parts, no control characters, no leading dots, bounded length."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if not name or set(name) <= {"_", "."}:
        name = fallback
    if name.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else name[:MAX_NAME]
    return name


def drop_reason(filename: str, size: int, limits: LimitsConfig) -> str | None:
    """Why an attachment is not kept (None: keep it)."""
    if size > limits.max_attachment_size:
        return f"larger than max_attachment_size ({size} > {limits.max_attachment_size} bytes)"
    lower = filename.lower()
    for ext in limits.blocked_extensions:
        if lower.endswith(ext.lower()):
            return f"blocked file type {ext}"
    return None
