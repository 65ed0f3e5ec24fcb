"""Where a release's traffic goes, and every switch of it: ``routing.json`` and
``switches.jsonl`` in the release's monitoring folder.

``mlnb release promote|rollback`` (from outside) and a release worker's own rules (from
inside) switch traffic the same way: the switch is appended to ``switches.jsonl`` (who,
when, why, the figures), then ``routing.json`` is replaced atomically. A worker reads
``routing.json`` again when its modification time changes (looked at every
``CHECK_SECONDS``): a request in flight finishes on the version it started on, the next
one goes where the file says, so no request is dropped by a switch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mlnb.errors import ReleaseStateError as ReleaseStateError  # re-exported: it lived here

ROUTING_FILE = "routing.json"
SWITCHES_FILE = "switches.jsonl"
RELEASE_FILE = "release.json"
CHECK_SECONDS = 0.25
ROLES = ("primary", "candidate")
MAX_STATE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Routing:
    """Who answers: ``answering`` takes every request, except that a canary that is not
    promoted sends ``percent`` % of them to the candidate."""

    answering: str = "primary"
    percent: float | None = None  # canary share; None for a shadow release
    switch: int = 0  # how many switches came before
    time: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Routing:
        if not isinstance(data, dict) or data.get("answering") not in ROLES:
            raise ValueError("not a routing: answering must be primary or candidate")
        percent = data.get("percent")
        if percent is not None and not (isinstance(percent, (int, float)) and 0 <= percent <= 100):
            raise ValueError("percent must be a number from 0 to 100")
        return cls(
            str(data["answering"]),
            None if percent is None else float(percent),
            int(data.get("switch") or 0),
            str(data.get("time") or ""),
        )


def now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container: the uid says who
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def read_routing(folder: Path) -> Routing | None:
    """The routing in ``folder``; None when there is none yet."""
    path = folder / ROUTING_FILE
    try:
        text = path.read_bytes()[:MAX_STATE_BYTES]
    except FileNotFoundError:
        return None
    try:
        return Routing.from_json(json.loads(text))
    except ValueError as exc:
        raise ReleaseStateError(
            f"{path} is not a routing file: {exc}",
            fix="run `mlnb release rollback` (or promote) to write it again",
        ) from None


def write_routing(folder: Path, routing: Routing) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ROUTING_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(routing.to_json()))
    os.replace(tmp, folder / ROUTING_FILE)


def start_routing(folder: Path, percent: float | None) -> Routing:
    """The routing a release starts with (kept when the folder has one: a restarted
    service keeps a promotion)."""
    with _locked(folder):
        known = read_routing(folder)
        if known is not None:
            return known
        routing = Routing("primary", percent, 0, now_text())
        write_routing(folder, routing)
        return routing


def switch(
    folder: Path,
    action: str,
    *,
    by: str | None = None,
    why: str = "",
    figures: dict[str, Any] | None = None,
    expect: int | None = None,
) -> Routing | None:
    """Promote (the candidate answers everything) or roll back (the primary does, and a
    canary stops); recorded in ``switches.jsonl`` first. ``expect``: do it only if the
    routing is still at that switch count (a worker's rules: another worker may have
    switched first); returns None when it was not done for that reason."""
    if action not in ("promote", "rollback"):
        raise ReleaseStateError(f"no switch {action!r}", fix="promote or rollback")
    with _locked(folder):
        current = read_routing(folder) or Routing()
        if expect is not None and current.switch != expect:
            return None
        target = "candidate" if action == "promote" else "primary"
        percent = current.percent
        if percent is not None:
            percent = 100.0 if action == "promote" else 0.0
        when = now_text()
        entry = {
            "time": when,
            "action": action,
            "from": current.answering if current.percent in (None, 0.0, 100.0) else "canary",
            "to": target,
            "by": by or who(),
            "why": why,
            "figures": figures or {},
            "switch": current.switch + 1,
        }
        with open(folder / SWITCHES_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, default=str) + "\n")
            log.flush()
            os.fsync(log.fileno())
        routing = replace(
            current,
            answering=target,
            percent=percent,
            switch=current.switch + 1,
            time=when,
        )
        write_routing(folder, routing)
        return routing


def read_switches(folder: Path, limit: int = 10_000) -> list[dict[str, Any]]:
    """The switches recorded in ``folder``, oldest first (unreadable lines skipped)."""
    found: list[dict[str, Any]] = []
    try:
        with open(folder / SWITCHES_FILE, encoding="utf-8") as log:
            for line in log:
                if len(found) >= limit:
                    break
                if len(line) > MAX_STATE_BYTES:
                    continue
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict):
                        found.append(entry)
    except FileNotFoundError:
        pass
    return found


@contextlib.contextmanager
def _locked(folder: Path) -> Any:
    """One switch at a time among the processes sharing the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".switch.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RoutingWatch:
    """A worker's view of ``routing.json``: re-read when the file changed, looked at no more
    often than every ``CHECK_SECONDS``."""

    def __init__(self, folder: Path, routing: Routing) -> None:
        self.folder = folder
        self.routing = routing
        self._next = 0.0
        self._mtime = 0

    def current(self) -> Routing:
        now = time.monotonic()
        if now < self._next:
            return self.routing
        self._next = now + CHECK_SECONDS
        try:
            mtime = (self.folder / ROUTING_FILE).stat().st_mtime_ns
        except OSError:
            return self.routing
        if mtime != self._mtime:
            self._mtime = mtime
            with contextlib.suppress(ReleaseStateError, OSError):
                self.routing = read_routing(self.folder) or self.routing
        return self.routing
