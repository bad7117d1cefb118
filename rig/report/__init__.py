"""Results of HIL runs: evidence folders, `cells.jsonl`, the matrix table, the timeline chart, the gate.

Everything here is computed from files the run wrote (attempt records, evidence folders), never from
live objects, so a report can be rebuilt from a killed run's folder. The pytest plugin and `rig gate`
write through `RunFolder`; the table, the nightly summary and the gate read `cells.jsonl`.
"""

from rig.report.evidence import RunFolder
from rig.report.gate import GateReport, judge
from rig.report.records import AttemptRecord, CellsLog, Seconds, cell_id, final_attempts, read_cells
from rig.report.table import CellSummary, matrix_table, summarize

__all__ = [
    "AttemptRecord",
    "CellSummary",
    "CellsLog",
    "GateReport",
    "RunFolder",
    "Seconds",
    "cell_id",
    "final_attempts",
    "judge",
    "matrix_table",
    "read_cells",
    "summarize",
]
