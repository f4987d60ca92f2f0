"""Connecting to a Dask cluster: ``--scheduler local`` or ``tcp://HOST:PORT``.

Shared by ``batch --scheduler`` (files as tasks) and ``apply --scheduler``
(one TIFF in chunks). Dask is an optional extra; nothing here imports it
until a connection is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from collections.abc import Iterator

from .errors import first_line

__all__ = ["SchedulerError", "connect", "is_scheduler_address", "require_dask"]


class SchedulerError(ValueError):
    """Dask is not installed, the address is malformed, or the scheduler cannot be reached."""


_ADDRESS = re.compile(r"^(?:[a-z]+://)?[^\s/]+:\d+$")


def is_scheduler_address(text: str) -> bool:
    """True for ``"local"`` and ``[PROTOCOL://]HOST:PORT``.

    >>> is_scheduler_address("tcp://10.0.0.5:8786"), is_scheduler_address("10.0.0.5")
    (True, False)
    """
    return text == "local" or bool(_ADDRESS.match(text))


def require_dask(address: str = "local") -> None:
    """Check that Dask's scheduler is installed and ``address`` looks like one.

    Raises
    ------
    SchedulerError
        Saying what to install, or what an address looks like.
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SchedulerError(
            "--scheduler needs Dask's distributed scheduler; install it with "
            "pip install 'convfilter[dask]'"
        ) from None
    if not is_scheduler_address(address):
        raise SchedulerError(
            f"--scheduler {address!r} is not a scheduler address; give tcp://HOST:PORT "
            "(e.g. tcp://10.0.0.5:8786) or 'local'"
        )


class Connection:
    """A Dask client, and the local cluster it started (if ``"local"``).

    ``"local"`` starts ``workers`` single-threaded worker processes and a
    scheduler on 127.0.0.1; its HTTP server takes any free port
    (``dashboard_address=None`` would still try 8787 and warn when another
    cluster has it), and its processes log only critical errors (convfilter
    reports what failed in its own words). Workers of any cluster must see the same paths (a
    shared file system): tasks carry absolute paths. :meth:`close` closes
    the client, and the local cluster with its workers.
    """

    def __init__(self, address: str, workers: int) -> None:
        require_dask(address)
        import distributed

        self.cluster = None
        self.client = None
        if address == "local":
            try:
                self.cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=":0", silence_logs=logging.CRITICAL,
                )  # fmt: skip
            except Exception as exc:  # distributed raises RuntimeError, OSError, ...
                raise SchedulerError(f"cannot start a local Dask cluster: {first_line(exc)}") from None
            address = self.cluster.scheduler_address
        try:
            self.client = distributed.Client(address, timeout="10s", set_as_default=False)
        except Exception as exc:
            self.close()
            raise SchedulerError(f"cannot reach the Dask scheduler at {address}: {first_line(exc)}") from None

    def close(self, *, abandon: bool = False) -> None:
        """Close the client and a local cluster. ``abandon`` (after an error or
        Ctrl-C) kills a local cluster's worker processes first, so that closing
        does not wait for the tasks they are running."""
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            if not abandon:
                cluster.close()
                return
            # The scheduler in this process logs each connection of a killed
            # worker as it closes (with a traceback, at INFO): quiet while it does.
            logger = logging.getLogger("distributed")
            level = logger.level
            logger.setLevel(logging.CRITICAL)
            try:
                _kill_workers(cluster)
                cluster.close()
            finally:
                logger.setLevel(level)


def _kill_workers(cluster) -> None:
    for nanny in list(cluster.workers.values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        pid = getattr(process, "pid", None)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # already gone
                pass


@contextlib.contextmanager
def connect(address: str, workers: int) -> Iterator[Connection]:
    """A :class:`Connection` for the ``with`` block, closed after it.

    Raises
    ------
    SchedulerError
        Dask missing, a malformed address, or a scheduler that cannot be reached.
    """
    connection = Connection(address, workers)
    try:
        yield connection
    except BaseException:
        connection.close(abandon=True)
        raise
    connection.close()
