"""The corpus of public Mbed TLS logs (tests/mbedtls/corpus): excerpts, their labels, and scoring.

`rig diagnose` reads each excerpt exactly as the command does (binary blocks through the bulk
reader) and every labelled field is compared with the diagnosis; `score` gives, per field, how many
excerpts agree out of how many are scored (a label `unknown` is not scored). Used by
tests/mbedtls/test_corpus.py (the accuracy floors) and tests/benchmarks/diagnose.py
(`make bench-diagnose`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rig.mbedtls import LogParser, diagnose_parser
from rig.mbedtls.bulk import feed_blocks

CORPUS = Path(__file__).parent / "corpus"
FIELDS = ("crash_free", "mbedtls_version", "role", "outcome", "category", "last_state", "error", "alert")
BASES = ("printed", "inferred", "absent", "unknown")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Entry:
    """One excerpt and its labels (field → value; `unknown` where the log allows no judgement)."""

    name: str
    log: bytes
    source: str
    labels: dict[str, Any]
    bases: dict[str, str]


def load(corpus: Path = CORPUS) -> list[Entry]:
    """Every excerpt of the corpus with its labels, by name."""
    entries = []
    for label_file in sorted(corpus.glob("*.yaml")):
        document = yaml.safe_load(label_file.read_text(encoding="utf-8"))
        fields = document["labels"]
        entries.append(
            Entry(
                name=label_file.stem,
                log=label_file.with_suffix(".log").read_bytes(),
                source=document["source"],
                labels={key: field["value"] for key, field in fields.items()},
                bases={key: field["basis"] for key, field in fields.items()},
            )
        )
    return entries


def diagnose(log: bytes) -> dict[str, Any]:
    """`rig diagnose --json` of a log: the bulk reader over the whole file, as the command reads it."""
    parser = LogParser()
    feed_blocks(parser, [log])
    return diagnose_parser(parser).to_json()


def matches(field: str, label: Any, diagnosis: dict[str, Any]) -> bool:
    """Whether the diagnosis agrees with the label of `field` (a version label may be the major only)."""
    if field == "mbedtls_version":
        found = diagnosis["mbedtls_version"]
        return found is not None and (found == label or found.startswith(f"{label}."))
    if field == "last_state":
        return diagnosis["last_state"]["name"] == label
    if field == "error":
        return (diagnosis["error"] or {}).get("code") == label
    if field == "alert":
        alert = diagnosis["alert"]
        if label is None or alert is None:
            return label is alert
        return all(alert[key] == label[key] for key in ("direction", "level", "description"))
    return bool(diagnosis[field] == label)


def verdicts(entries: Iterable[Entry]) -> dict[str, dict[str, bool | None]]:
    """Per excerpt and field: True (agrees), False (disagrees) or None (not scored)."""
    result: dict[str, dict[str, bool | None]] = {}
    for entry in entries:
        try:
            diagnosis: dict[str, Any] | None = diagnose(entry.log)
        except Exception:  # a crash is what this measures: it must not stop the count
            diagnosis = None
        row: dict[str, bool | None] = {"crash_free": diagnosis is not None}
        for field in FIELDS[1:]:
            label = entry.labels[field]
            row[field] = (
                None if label == UNKNOWN else (diagnosis is not None and matches(field, label, diagnosis))
            )
        result[entry.name] = row
    return result


def score(entries: Iterable[Entry]) -> dict[str, tuple[int, int]]:
    """Per field: (excerpts that agree, excerpts scored)."""
    rows = verdicts(entries).values()
    totals: dict[str, tuple[int, int]] = {}
    for field in FIELDS:
        scored = [row[field] for row in rows if row[field] is not None]
        totals[field] = (sum(1 for ok in scored if ok), len(scored))
    return totals
