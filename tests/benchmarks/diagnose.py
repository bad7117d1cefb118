"""Benchmark: how often `rig diagnose` agrees with the labels of the public-log corpus.

Reads every excerpt of tests/mbedtls/corpus as `rig diagnose` does and prints, per labelled field,
the share of excerpts it agrees with (crash-free, last state, category and error code first), then
the excerpts that disagree, with the label and what the diagnosis said. The floors the test suite
holds are in tests/mbedtls/test_corpus.py. Run: `make bench-diagnose` (python -m tests.benchmarks.diagnose from the checkout).
"""

from __future__ import annotations

from typing import Any

from tests.mbedtls.real_logs import FIELDS, diagnose, load, score, verdicts

_SHOWN = {
    "mbedtls_version": lambda d: d["mbedtls_version"],
    "role": lambda d: d["role"],
    "outcome": lambda d: d["outcome"],
    "category": lambda d: d["category"],
    "last_state": lambda d: d["last_state"]["name"],
    "error": lambda d: (d["error"] or {}).get("code"),
    "alert": lambda d: d["alert"] and {k: d["alert"][k] for k in ("direction", "level", "description")},
}
_ORDER = ("crash_free", "last_state", "category", "error", "outcome", "alert", "role", "mbedtls_version")


def main() -> None:
    entries = load()
    totals = score(entries)
    print(f"corpus: {len(entries)} excerpts of public Mbed TLS logs (tests/mbedtls/corpus)")
    print("field              agree / scored   accuracy")
    for field in _ORDER:
        agreed, scored = totals[field]
        print(f"{field:18s} {agreed:5d} / {scored:<6d}  {100 * agreed / scored:6.1f} %")
    rows = verdicts(entries)
    by_name = {entry.name: entry for entry in entries}
    disagreements = [(name, row) for name, row in rows.items() if any(ok is False for ok in row.values())]
    if disagreements:
        print("\nexcerpts that disagree (label → diagnosis):")
    for name, row in disagreements:
        entry = by_name[name]
        if row["crash_free"] is False:
            print(f"  {name}: crashed")
            continue
        diagnosis: dict[str, Any] = diagnose(entry.log)
        wrong = [
            f"{field} {entry.labels[field]!r} → {_SHOWN[field](diagnosis)!r}"
            for field in FIELDS[1:]
            if row[field] is False
        ]
        print(f"  {name}: " + "; ".join(wrong))


if __name__ == "__main__":
    main()
