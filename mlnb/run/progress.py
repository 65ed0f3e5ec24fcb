"""The stage-by-stage display of ``mlnb run`` on stderr.

On a terminal the running stage shows on a line that is replaced by its result; elsewhere
(CI logs) one plain line per stage is printed as it settles. ``--json`` uses
:class:`Quiet`, so nothing but the final JSON reaches the output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

_MARKS = {"ran": "✓", "cached": "○", "failed": "✗", "not-run": "·", "running": "▸"}
_COLORS = {"ran": "32", "cached": "2", "failed": "31", "not-run": "2", "running": "36"}


class Quiet:
    def run_started(self, record: Mapping[str, Any]) -> None:
        pass

    def stage_started(self, entry: Mapping[str, Any]) -> None:
        pass

    def stage_finished(self, entry: Mapping[str, Any]) -> None:
        pass

    def run_finished(self, record: Mapping[str, Any]) -> None:
        pass

    def notice(self, text: str) -> None:
        """Something the user should know about this run (said once, not per stage): on
        stderr even when the run prints nothing else, as with ``--json``."""
        print(f"mlnb: note: {text}", file=sys.stderr)


class Progress(Quiet):
    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self.order: list[str] = []
        self.entries: list[Mapping[str, Any]] = []  # the record's stages, updated in place
        self.shown: set[str] = set()
        self.width = 8
        self.transient = False

    def run_started(self, record: Mapping[str, Any]) -> None:
        stages = record["stages"]
        self.entries = stages
        self.shown = set()  # a second pass (a corrected plan) shows its stages again
        self.order = [s["name"] for s in stages]
        self.width = max([8, *(len(s["name"]) for s in stages)])
        cached = sum(1 for s in stages if s["status"] == "cached")
        name = os.path.basename(record["notebook"]["path"])
        self._line(
            f"mlnb run {name}: run {record['run_id']}, {len(stages)} stage(s), {cached} cached"
        )
        if any(s["status"] != "cached" for s in stages):
            self._transient("  starting the kernel...")

    def stage_started(self, entry: Mapping[str, Any]) -> None:
        self._flush_before(entry["name"], statuses={"cached"})
        if self.tty:
            self._transient(self._format(entry, "running", "running..."))

    def stage_finished(self, entry: Mapping[str, Any]) -> None:
        self._flush_before(entry["name"], statuses={"cached"})
        self._settle(entry)

    def run_finished(self, record: Mapping[str, Any]) -> None:
        for entry in record["stages"]:
            if entry["name"] not in self.shown:
                self._settle(entry)
        self._clear()

    def notice(self, text: str) -> None:
        self._line(f"  note: {text}")

    def _flush_before(self, name: str, statuses: set[str]) -> None:
        for other in self._entries_before(name):
            if other["name"] not in self.shown and other["status"] in statuses:
                self._settle(other)

    def _entries_before(self, name: str) -> list[Mapping[str, Any]]:
        return self.entries[: self.order.index(name)] if name in self.order else []

    def _settle(self, entry: Mapping[str, Any]) -> None:
        status = entry["status"]
        detail = ""
        if status == "ran":
            detail = f"{entry.get('seconds') or 0:.2f}s  {entry.get('reason') or ''}".rstrip()
        elif status == "cached":
            detail = entry.get("reason") or ""
        self.shown.add(entry["name"])
        self._line(self._format(entry, status, detail))

    def _format(self, entry: Mapping[str, Any], status: str, detail: str) -> str:
        mark = _MARKS.get(status, " ")
        label = status.replace("-", " ")
        text = f"  {mark} {entry['name']:<{self.width}} {entry['kind']:<6} {label:<8} {detail}"
        text = text.rstrip()
        if self.color:
            text = f"\x1b[{_COLORS.get(status, '0')}m{text}\x1b[0m"
        return text

    def _transient(self, text: str) -> None:
        if not self.tty:
            return
        self.stream.write(f"\r\x1b[2K{text}")
        self.stream.flush()
        self.transient = True

    def _clear(self) -> None:
        if self.transient:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.transient = False

    def _line(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
