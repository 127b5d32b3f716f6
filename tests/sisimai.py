"""Labels of the Sisimai corpus copied into tests/corpora (BSD-2-Clause, see its README)."""

from __future__ import annotations

import csv
from pathlib import Path

SISIMAI = Path(__file__).parent / "corpora" / "sisimai"


def sisimai_labels() -> dict[str, set[str]]:
    """Labelled file (relative path) -> reasons; dos/ and mac/ copies carry the labels of their bsd/ file."""
    labels: dict[str, set[str]] = {}
    with open(SISIMAI / "labels.tsv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            labels.setdefault(row["file"], set()).add(row["reason"])
    for copy in ("dos", "mac"):
        for path in sorted((SISIMAI / "set-of-emails" / "maildir" / copy).glob("*.eml")):
            bsd = f"set-of-emails/maildir/bsd/{path.name}"
            if bsd in labels:
                labels[f"set-of-emails/maildir/{copy}/{path.name}"] = labels[bsd]
    return labels
