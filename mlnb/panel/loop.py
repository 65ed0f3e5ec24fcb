"""The one hand-off between the panel's work and its widgets: the kernel's own event loop.

ipykernel 7 handles comm messages (a button's click) on a subshell thread when JupyterLab asks
for it (its default), and routes what other threads send by their own context; a widget changed
from a background thread may then never reach the front end. So the panel captures the loop
that runs the cell showing it (the kernel's main asyncio loop), hands every click to that loop
(:meth:`KernelLoop.call`), follows its ``mlnb`` processes with a task on it (:func:`follow`),
and changes widgets there only (:meth:`KernelLoop.check`). No thread of the panel's touches a
widget.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from mlnb.panel.state import CommandEnded, CommandProcess, PanelEvent, RecordSeen, final_record

POLL_SECONDS = 0.3


class NoKernelLoopError(RuntimeError):
    """The panel was asked to run something where no kernel event loop was captured."""


class KernelLoop:
    """The asyncio loop of the kernel, the thread that runs it, and the context of the cell that
    showed the panel: what runs on the loop for the panel runs in that context, so the kernel
    sends the panel's messages as replies to that cell whichever thread took the click."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread_id: int,
        context: contextvars.Context | None = None,
    ) -> None:
        self.loop = loop
        self.thread_id = thread_id
        self.context = context or contextvars.copy_context()

    @classmethod
    def capture(cls) -> KernelLoop | None:
        """The loop running the current code (a cell in a kernel), or None outside one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return cls(loop, threading.get_ident(), contextvars.copy_context())

    def on_loop(self) -> bool:
        return threading.get_ident() == self.thread_id

    def call(self, action: Callable[[], object]) -> None:
        """Run ``action`` on the loop: now when already there, else as soon as the loop is free
        (a click handled on a subshell thread, a test's thread)."""
        if self.on_loop():
            action()
        else:
            self.loop.call_soon_threadsafe(action, context=self.context)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        self.check()
        return self.loop.create_task(work, name=name)  # in the context it was started from

    def check(self) -> None:
        """Refuse, loudly, to go on off the loop (a widget changed from another thread)."""
        if not self.on_loop():
            raise RuntimeError(
                f"mlnb panel: widgets changed from thread {threading.current_thread().name!r}; "
                "only the kernel's event loop may change them (KernelLoop.call)"
            )


def require(loop: KernelLoop | None) -> KernelLoop:
    if loop is None:
        raise NoKernelLoopError(
            "the panel runs commands from a Jupyter kernel's event loop and none ran when it was "
            "made; show it with %mlnb in a notebook, or use `mlnb run` / `mlnb build` in a terminal"
        )
    return loop


async def follow(
    command: CommandProcess,
    emit: Callable[[PanelEvent], None],
    read_record: Callable[[], Mapping[str, Any] | None] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Poll ``command`` on the loop until it ends, emitting what the store shows meanwhile and
    then its end. A command that ended before the first poll gets its end all the same; the final
    run record comes from what ``mlnb run --json`` printed, else from the store. A poll that
    fails (a record half read, a store being repaired) is skipped: the end is shown whatever
    happened on the way."""
    while not command.finished:
        if read_record is not None:
            with contextlib.suppress(Exception):  # the next poll, or the end, shows the truth
                emit(RecordSeen(read_record()))
        await asyncio.sleep(poll_seconds)
    stdout, stderr = command.output()
    record = final_record(stdout)
    if record is None and read_record is not None:
        record = dict(read_record() or {}) or None
    emit(CommandEnded(int(command.returncode or 0), stdout, stderr, record))
