"""An attempt's evidence as allure attachments (a no-op when pytest runs without `--alluredir`).

What is attached, by file name in the attempt folder: the UART log (raw bytes, as text), the
timestamped line stream, the diagnosis, the bench's events, the programmer's output, the pcap and its
TLS-record view (`wire.json`), the wire against the stack (`wire-vs-stack.txt`/`.json`), the theories answered (`theories.txt`), the cloud's own journal (`cloud.jsonl`), the timeline chart and the diff against the passing attempt. Private keys never leave the bench: only
these named files are attached, never a folder's whole content.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import allure

from rig.report import evidence as files

# allure's `attach.file(source, name=None, attachment_type=None, extension=None)` has no annotations.
_attach_file: Callable[..., Any] = allure.attach.file

_ATTACHMENTS: tuple[tuple[str, str, str], ...] = (
    # (file name, title, allure attachment type name)
    (files.DIAGNOSIS, "diagnosis", "JSON"),
    (files.DIFF_TEXT, "diff against the passing attempt", "TEXT"),
    (files.TIMELINE, "handshake timeline", "PNG"),
    (files.UART_RAW, "UART log", "TEXT"),
    (files.UART_JSONL, "UART lines (timestamped)", "JSON"),
    (files.EVENTS, "bench events", "JSON"),
    (files.CAPTURE, "packet capture", "PCAP"),
    (files.WIRE, "the wire: TCP segments and TLS records", "JSON"),
    (files.WIRE_VS_STACK_TEXT, "wire against stack: bytes on the wire vs bytes Mbed TLS read", "TEXT"),
    (files.WIRE_VS_STACK_JSON, "wire against stack (JSON)", "JSON"),
    (files.THEORIES, "the incident's theories, answered", "TEXT"),
    (files.CLOUD_LOG, "the cloud's own journal", "JSON"),
)


def attach_attempt(folder: Path, attempt: int, *, label: str = "attempt") -> list[str]:
    """Attach the evidence files of one attempt that exist; returns the names attached."""
    attached = []
    for name, title, kind in _ATTACHMENTS:
        target = folder / name
        if target.is_file() and target.stat().st_size > 0:
            _attach_file(
                str(target),
                name=f"{label} {attempt}: {title}",
                attachment_type=getattr(allure.attachment_type, kind),
            )
            attached.append(name)
    programmer = folder / files.PROGRAMMER_DIR
    if programmer.is_dir():
        for output in sorted(programmer.iterdir()):
            if output.is_file() and output.suffix in (".txt", ".log", ".out", ".json"):
                _attach_file(
                    str(output),
                    name=f"{label} {attempt}: programmer {output.name}",
                    attachment_type=allure.attachment_type.TEXT,
                )
                attached.append(f"{files.PROGRAMMER_DIR}/{output.name}")
    return attached


def attach_files(paths: list[Path], title: str) -> None:
    """Attach files written by the comparison (chart, diff) under `title`."""
    kinds = {".png": allure.attachment_type.PNG, ".json": allure.attachment_type.JSON}
    for path in paths:
        if path.is_file():
            _attach_file(
                str(path),
                name=f"{title}: {path.name}",
                attachment_type=kinds.get(path.suffix, allure.attachment_type.TEXT),
            )


def label_cell(variant: str, path: str) -> None:
    """Group the allure report by variant (feature) and path (story)."""
    feature: Callable[..., Any] = allure.dynamic.feature
    story: Callable[..., Any] = allure.dynamic.story
    feature(variant)
    story(path)


def write_environment(allure_dir: Path, values: dict[str, str]) -> Path:
    """allure's `environment.properties` in its results folder: the run's bench, its kind, images, rig.

    One `key=value` line each (allure reads Java properties; `=`, `:` and backslashes in values are
    escaped), so the report's Environment panel says which bench judged what.
    """
    allure_dir.mkdir(parents=True, exist_ok=True)
    target = allure_dir / "environment.properties"

    def escape(text: str) -> str:
        text = text.replace("\\", "\\\\").replace("=", "\\=").replace(":", "\\:").replace("\n", " ")
        return text.replace(" ", "\\ ")

    target.write_text("".join(f"{escape(k)}={escape(v)}\n" for k, v in values.items()), encoding="utf-8")
    return target
