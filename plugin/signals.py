"""Stopping on Ctrl-C / SIGTERM without deadlocks (``whyslow serve`` and ``whyslow demo --keep-running``)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator


class StopRequest:
    """Counts Ctrl-C / SIGTERM; the main loop polls :meth:`requested` and stops in its own time.

    Its handler takes no lock, writes through no buffered stream and starts no thread: it runs between two
    bytecodes of the main thread, which may hold any of those locks at that moment (an ``Event.set()`` there
    deadlocks against the ``Event.wait()`` it interrupted; a ``logging`` call against a log line being written).
    A second signal exits at once with status 130 (the user insists).
    """

    def __init__(self, program: str) -> None:
        self.program = program
        self.signals = 0
        self.last: str = ""

    def requested(self) -> bool:
        return self.signals > 0

    def handle(self, signum: int, _frame: object) -> None:
        self.signals += 1
        self.last = signal.Signals(signum).name
        if self.signals > 1:
            os.write(2, f"{self.program}: {self.last} again, exiting now\n".encode())
            os._exit(130)


@contextlib.contextmanager
def stop_on_signals(program: str) -> Iterator[StopRequest]:
    """A :class:`StopRequest` handling SIGINT and SIGTERM while the block runs (previous handlers restored after).

    The handlers are installed explicitly, also for SIGINT: a shell starts background jobs with Ctrl-C ignored,
    and Python then never raises KeyboardInterrupt. Outside the main thread no handler can be installed; the
    request then never fires and the caller's own end condition applies."""
    stop = StopRequest(program)
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop.handle)
    except ValueError:
        pass
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
