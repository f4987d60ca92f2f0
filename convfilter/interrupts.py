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

__all__ = ["quiet_for", "signals_routed", "CtrlC"]


def quiet_for(stop: type[BaseException], hook: Callable) -> Callable:
    """A ``sys.unraisablehook`` that says nothing of ``stop`` exceptions, which a
    signal handler raised inside a finalizer after recording its signal, and
    passes every other report on to ``hook``."""

    def report(unraisable) -> None:
        if not isinstance(unraisable.exc_value, stop):
            hook(unraisable)

    return report


class signals_routed:
    """Route ``signums`` to ``handler`` for the block, main thread only (elsewhere
    nothing changes); ``stop``, the exception the handler raises, goes unreported
    if a finalizer drops it. The previous handlers and hook come back after."""

    def __init__(self, signums: tuple[int, ...], handler: Callable, stop: type[BaseException]) -> None:
        self.signums, self.handler, self.stop = signums, handler, stop
        self._saved: tuple | None = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            handlers = {signum: signal.getsignal(signum) for signum in self.signums}
            self._saved = (handlers, sys.unraisablehook)
            sys.unraisablehook = quiet_for(self.stop, sys.unraisablehook)
            for signum in self.signums:
                signal.signal(signum, self.handler)

    def __exit__(self, *exc_info) -> None:
        if self._saved is not None:
            handlers, sys.unraisablehook = self._saved
            for signum, previous in handlers.items():
                signal.signal(signum, previous)
            self._saved = None


class CtrlC:
    """Ctrl-C (SIGINT) as KeyboardInterrupt, remembered for the block's duration.

    ``with CtrlC() as ctrl_c:`` raises KeyboardInterrupt on SIGINT as Python
    does; if a finalizer swallowed it, :meth:`checkpoint` raises it again.
    Outside the main thread it changes nothing.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._routed = signals_routed((signal.SIGINT,), self._handler, KeyboardInterrupt)

    def __enter__(self) -> CtrlC:
        self._routed.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._routed.__exit__(*exc_info)

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
