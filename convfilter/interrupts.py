"""Signals that Python would drop, kept until the work can stop.

Python runs a signal handler wherever the main thread is when the signal
arrives. If that is inside a finalizer (an object's ``__del__``, a
generator the garbage collector closes), the handler's exception cannot be
raised there: Python prints it as a traceback and carries on as if nothing
had happened. So a handler here records the signal before it raises, the
report of the dropped exception is silenced (:func:`quiet_for`), and the
work stops at its next checkpoint instead. Imports nothing but the
standard library.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

__all__ = ["quiet_for", "CtrlC"]


def quiet_for(stop: type[BaseException], hook: Callable) -> Callable:
    """A ``sys.unraisablehook`` that says nothing of ``stop`` exceptions, which a
    signal handler raised inside a finalizer after recording its signal, and
    passes every other report on to ``hook``."""

    def report(unraisable) -> None:
        if not isinstance(unraisable.exc_value, stop):
            hook(unraisable)

    return report


class CtrlC:
    """Ctrl-C (SIGINT) as KeyboardInterrupt, remembered for the block's duration.

    ``with CtrlC() as ctrl_c:`` raises KeyboardInterrupt on SIGINT as Python
    does; if a finalizer swallowed it, :meth:`checkpoint` raises it again.
    Outside the main thread it changes nothing.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._saved: tuple | None = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._saved = (signal.getsignal(signal.SIGINT), sys.unraisablehook)
            sys.unraisablehook = quiet_for(KeyboardInterrupt, sys.unraisablehook)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._saved is not None:
            handler, sys.unraisablehook = self._saved
            signal.signal(signal.SIGINT, handler)
            self._saved = None

    def _handler(self, signum, frame) -> None:  # noqa: ARG002 - a signal handler's signature
        self.pressed = True
        raise KeyboardInterrupt

    def checkpoint(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed."""
        if self.pressed:
            raise KeyboardInterrupt

    def watching(self, progress: Callable[[float], object] | None) -> Callable[[float], object]:
        """A progress callback that checks for Ctrl-C, then calls ``progress`` (if any)."""

        def report(fraction: float) -> None:
            self.checkpoint()
            if progress is not None:
                progress(fraction)

        return report
