"""The public-log corpus: its labels are complete and say their basis, and rig diagnose keeps its accuracy.

The floors are the accuracy reached when the corpus was labelled; a change that makes rig diagnose
disagree with more excerpts on any field fails here (`make bench-diagnose` prints the figures and the
excerpts that disagree).
"""

from __future__ import annotations

import pytest

from rig.mbedtls import CATEGORIES
from tests.mbedtls.real_logs import BASES, CORPUS, FIELDS, UNKNOWN, Entry, load, score

ENTRIES = load()
# field → the share of scored excerpts rig diagnose must agree with (measured: agreed/scored).
FLOORS = {
    "crash_free": 61 / 61,
    "mbedtls_version": 34 / 54,
    "role": 39 / 61,
    "outcome": 61 / 61,
    "category": 61 / 61,
    "last_state": 47 / 51,
    "error": 61 / 61,
    "alert": 61 / 61,
}
OUTCOMES = ("completed", "failed", "stalled", "incomplete")


def test_every_excerpt_has_its_label_file_and_is_a_few_kb_at_most() -> None:
    logs = {path.stem for path in CORPUS.glob("*.log")}
    labels = {path.stem for path in CORPUS.glob("*.yaml")}
    assert logs == labels
    assert len(logs) >= 60
    assert max(len(entry.log) for entry in ENTRIES) <= 4096


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_every_label_is_complete_and_says_its_basis(entry: Entry) -> None:
    assert entry.source.startswith("https://")
    assert set(entry.labels) == set(FIELDS[1:])
    for field, basis in entry.bases.items():
        assert basis.startswith(BASES), f"{field}: {basis}"
        assert (entry.labels[field] == UNKNOWN) == basis.startswith("unknown"), field
        assert (entry.labels[field] is None) <= basis.startswith("absent"), field
    assert entry.labels["category"] in CATEGORIES
    assert entry.labels["outcome"] in OUTCOMES
    assert entry.labels["role"] in ("client", "server", UNKNOWN)


def test_rig_diagnose_keeps_its_accuracy_on_every_field() -> None:
    totals = score(ENTRIES)
    below = {
        field: f"{agreed}/{scored}"
        for field, (agreed, scored) in totals.items()
        if agreed < FLOORS[field] * scored - 1e-9
    }
    assert below == {}
