"""Running a plan: :func:`process_one` on every task, here, on threads, in worker processes or on Dask.

:func:`run_batch` hands the tasks to one of four executors that share one
protocol (:class:`_Executor`) and one loop (:func:`_drive`): this process
(``jobs=1``), threads of this process or worker processes, each given one
file at a time (``jobs>1``; threads for all but long batches, see
:data:`THREADS_UP_TO_FILES`), or a Dask cluster (``scheduler=...``).
SIGINT and SIGTERM stop a run cleanly: files in progress are abandoned,
workers are ended, temporary files are removed, and the summary says what
finished.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import queue
import signal
import threading
import time
from typing import Callable, Iterable, Iterator

from .. import cluster, images
from ..allocator import reuse_freed_memory
from ..cluster import Connection, is_scheduler_address, require_dask
from ..errors import error_text
from ..interrupts import signals_routed
from ..options import FilterSettings, OutputSettings
from ..pipeline import filter_file
from .plan import BatchError, Plan, Task, _inode
from .report import BatchSummary, Outcome

__all__ = [
    "SchedulerError",
    "process_one",
    "run_batch",
    "default_jobs",
    "require_dask",
    "is_scheduler_address",
]


class SchedulerError(BatchError, cluster.SchedulerError):
    """Dask is not installed, or the scheduler cannot be reached."""


# ---------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------


def process_one(task: Task, settings: FilterSettings, output: OutputSettings, *,
                progress: Callable[[float], object] | None = None) -> Outcome:  # fmt: skip
    """Filter one planned file with :func:`pipeline.filter_file`; never raises for a bad file.

    The output's folder is created first. Paths are the task's absolute
    ones, so it runs alike in a thread, a worker process or a Dask worker.
    ``progress`` goes to ``filter_file``; an exception it raises that is
    not an ``Exception`` (a ``BaseException``) abandons the file before
    anything is written, and passes through.
    """
    start = time.perf_counter()
    try:
        os.makedirs(os.path.dirname(task.destination), exist_ok=True)
        result = filter_file(task.source, task.destination, settings, output, source_name=task.input,
                             destination_name=task.output, progress=progress)  # fmt: skip
    except Exception as exc:  # one bad file must not stop the batch
        error = _describe_error(exc, task.input)
        return Outcome(task.input, task.output, "failed", error=error,
                       milliseconds=_ms_since(start), index=task.index)  # fmt: skip
    return Outcome(task.input, task.output, "ok", milliseconds=_ms_since(start), index=task.index,
                   notes=tuple(result.notes))  # fmt: skip


def _describe_error(exc: BaseException, name: str) -> str:
    """The error line of a failed file, without the file's name (the report puts it first)."""
    text = error_text(exc)
    for prefix in (f"'{name}': ", f"'{name}' "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


# ---------------------------------------------------------------------------
# Running the plan
# ---------------------------------------------------------------------------


class _Interrupted(BaseException):
    """Raised by SIGINT/SIGTERM while a file is processed in this very process."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Control:
    """Why a run stops: a signal (recorded by :meth:`handler`), or --fail-fast after a failure."""

    def __init__(self, summary: BatchSummary, fail_fast: bool) -> None:
        self.summary = summary
        self.fail_fast = fail_fast
        self.signum: int | None = None
        self.raise_now = False  # True while this process itself is filtering a file

    @property
    def signalled(self) -> bool:
        return self.signum is not None

    def stopping(self) -> bool:
        return self.signalled or (self.fail_fast and bool(self.summary.failed))

    def handler(self, signum, frame) -> None:  # noqa: ARG002 - a signal handler's signature
        """SIGINT and SIGTERM while a run lasts: noted, and raised while this process
        filters a file. Python drops the exception if it is raised inside a finalizer
        (see :mod:`convfilter.interrupts`); :meth:`checkpoint` then raises it again."""
        if self.signum is None:
            self.signum = signum
        if self.raise_now:
            self.raise_now = False
            raise _Interrupted(signum)

    def checkpoint(self, fraction: float) -> None:  # noqa: ARG002 - a progress callback
        """Abandon the file this process is filtering once a signal has come."""
        if self.signalled:
            self.raise_now = False
            raise _Interrupted(self.signum)


def default_jobs() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: How ``run_batch`` may run a local batch of more than one job.
WORKERS = ("auto", "threads", "processes")

#: ``workers="auto"`` runs a batch on threads when it has at most this many
#: files, else in worker processes. Threads start at once, where worker
#: processes take about 0.3 s; each file holds the GIL only for the Python
#: between its steps (its pixels are decoded into, filtered in and encoded
#: from one array). Measured: threads ahead of processes up to 400 small
#: photos (by 20 % at 200), level or behind at 800; ahead on 24 photos of
#: 12 MP. Processes also isolate each file: a crashing decoder, or the
#: out-of-memory killer, then takes one file, not the batch.
#: docs/batch.md (Parallelism) has the figures.
THREADS_UP_TO_FILES = 200


def run_batch(
    plan: Plan,
    settings: FilterSettings,
    output: OutputSettings = OutputSettings(),
    *,
    jobs: int = 1,
    workers: str = "auto",
    fail_fast: bool = False,
    scheduler: str | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    started: float | None = None,
    handle_signals: bool = True,
) -> BatchSummary:
    """Process every task of ``plan`` and return the summary; a bad file never raises.

    ``jobs`` > 1 filters that many files at a time, on threads of this
    process (``workers="threads"``) or in worker processes
    (``"processes"``: a crashing decoder or the out-of-memory killer then
    fails only the file it held); ``"auto"`` takes threads for a batch of
    up to :data:`THREADS_UP_TO_FILES` files, processes for a longer one.
    Each file's engine gets an equal share of the CPUs,
    ``max(1, CPUs // jobs)`` threads, unless ``settings.threads`` says
    otherwise: outputs are byte-identical whatever ``jobs``, ``workers``
    and ``threads`` are.
    ``scheduler`` (``"local"`` or a Dask scheduler address such as
    ``tcp://10.0.0.5:8786``) runs the same tasks on Dask instead.
    ``on_outcome`` sees each file's :class:`Outcome` as it happens (the
    plan's skipped and failed files first). ``started`` (a
    ``time.perf_counter()`` value) is when the clock of the summary starts.
    With ``handle_signals`` (in the main thread), SIGINT and SIGTERM stop
    the batch cleanly: files in progress are abandoned, workers have ended
    when it returns, no temporary file is left, and the summary's
    ``interrupted`` names the signal.

    Raises
    ------
    ValueError
        ``workers`` is not one of :data:`WORKERS`.
    SchedulerError
        ``scheduler`` is given but Dask is not installed or not reachable.
    """
    if workers not in WORKERS:
        raise ValueError(f"workers must be one of {', '.join(WORKERS)}, not {workers!r}")
    start = time.perf_counter() if started is None else started
    summary = BatchSummary(planned=len(plan.tasks))
    report = on_outcome or (lambda outcome: None)

    def record(outcome: Outcome) -> None:
        summary.add(outcome)
        report(outcome)

    control = _Control(summary, fail_fast)
    executor = _executor(scheduler, jobs, workers, plan.tasks, control)
    try:
        for outcome in plan.skipped + plan.failed:
            record(outcome)
        failed_before = len(summary.failed)
        routed = signals_routed((signal.SIGINT, signal.SIGTERM), control.handler, _Interrupted)
        with routed if handle_signals else contextlib.nullcontext():
            _drive(executor, plan.tasks, settings, output, record, control)
    finally:
        executor.close()
    finished = summary.processed + len(summary.failed) - failed_before
    summary.unfinished = max(0, len(plan.tasks) - finished)
    if control.signalled:
        summary.interrupted = signal.Signals(control.signum).name
    elif fail_fast and summary.failed and summary.unfinished:
        summary.stopped_early = True
    summary.seconds = time.perf_counter() - start
    return summary


def _executor(scheduler: str | None, jobs: int, workers: str, tasks: list[Task], control: _Control) -> _Executor:
    """The executor for a run; a Dask one connects now, so that a SchedulerError
    comes before any outcome."""
    if scheduler is not None:
        return _DaskExecutor(scheduler, jobs)
    jobs = min(jobs, len(tasks))
    if jobs <= 1:
        return _InlineExecutor(control)
    if workers == "processes" or (workers == "auto" and len(tasks) > THREADS_UP_TO_FILES):
        return _PoolExecutor(jobs)
    return _ThreadExecutor(jobs, control)


def _share_of_cpus(settings: FilterSettings, jobs: int) -> FilterSettings:
    """``settings`` for one of ``jobs`` files filtered at once: the engine on an equal
    share of the CPUs (at least one thread), unless ``settings.threads`` is given."""
    if settings.threads is not None:
        return settings
    return dataclasses.replace(settings, threads=max(1, default_jobs() // jobs))


def _drive(executor: _Executor, tasks: Iterable[Task], settings: FilterSettings, output: OutputSettings,
           record: Callable[[Outcome], None], control: _Control) -> None:  # fmt: skip
    """Give ``executor`` tasks while it has room and record their outcomes.

    It stops handing out files on a signal or, with --fail-fast, after a
    failure; a signal also cuts off the files in progress, --fail-fast lets
    them finish. Whatever ends the loop, the executor is cancelled and the
    files it still held are settled.
    """
    pending = iter(tasks)
    try:
        executor.start(settings, output)
        while True:
            while len(executor) < executor.capacity and not control.stopping():
                task = next(pending, None)
                if task is None:
                    break
                executor.submit(task)
            if not len(executor) or control.signalled:
                return
            for outcome in executor.results(timeout=0.2):
                record(outcome)
    finally:
        sent, in_flight = executor.cancel()
        for outcome in sent:
            record(outcome)
        _settle(in_flight, record)


def _settle(in_flight: list[Task], record) -> None:
    """After workers were ended: remove their temporary files, and count as processed
    each output that was renamed into place before its worker could report it."""
    _sweep_temporary_files(in_flight)
    for task in in_flight:
        inode = _inode(task.destination)
        if inode is not None and inode != task.replaces:
            record(Outcome(task.input, task.output, "ok", index=task.index,
                           reason="finished as the batch was stopped"))  # fmt: skip


def _sweep_temporary_files(tasks: Iterable[Task]) -> None:
    """Remove the ``.NAME.XXXX.part`` files that writes of these outputs may have left."""
    for task in tasks:
        directory, name = os.path.split(task.destination)
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            if images.is_temporary_for(entry, name):
                try:
                    os.unlink(os.path.join(directory, entry))
                except OSError:
                    pass


# ---------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------


class _Executor(abc.ABC):
    """Where tasks run, as :func:`_drive` uses it.

    ``start`` once, then ``submit`` while ``len(executor) < capacity``;
    ``results`` yields outcomes as tasks end; ``cancel`` ends the work and
    returns the outcomes already sent and the tasks cut off; ``close``
    releases what the constructor took (it may be called more than once).
    """

    #: How many tasks it takes at a time (known after ``start``).
    capacity: int = 0

    @abc.abstractmethod
    def start(self, settings: FilterSettings, output: OutputSettings) -> None:
        """Get ready to run tasks with these settings."""

    @abc.abstractmethod
    def submit(self, task: Task) -> None:
        """Start ``task``."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The tasks submitted whose outcome it has not yielded."""

    @abc.abstractmethod
    def results(self, timeout: float) -> Iterator[Outcome]:
        """Outcomes of the tasks that ended, waiting up to ``timeout`` seconds for one."""

    @abc.abstractmethod
    def cancel(self) -> tuple[list[Outcome], list[Task]]:
        """End all work: the outcomes sent meanwhile, and the tasks that were cut off."""

    def close(self) -> None:
        """Release what the constructor took."""


class _Committer:
    """One thread that puts written outputs in place, then reports their files.

    An executor runs each file within :func:`images.deferred_commits` and
    hands over its outcome with the writes left pending: the output is
    synced to disk and renamed into place here, while the executor filters
    its next file, so that waiting for the disk (a few milliseconds a file)
    is no longer time a CPU stands idle. Each ``(task, outcome)`` goes to
    ``finished`` once its output is in place; a commit the disk refuses
    fails its file. With --fail-fast, ``failed`` is set by the first file
    that fails, here or (through :meth:`hand_over`) before.
    """

    def __init__(self, finished: queue.SimpleQueue, fail_fast: bool) -> None:
        self.finished = finished
        self.fail_fast = fail_fast
        self.failed = threading.Event()
        self._written: queue.SimpleQueue = queue.SimpleQueue()  # (task, outcome, writes), then None
        self._thread = threading.Thread(target=self._run, name="convfilter-batch-commit")

    def start(self) -> None:
        self._thread.start()

    def hand_over(self, task: Task, outcome: Outcome | None, writes: list) -> None:
        """Queue the writes of a finished file; any other outcome (and None: a file
        not done) goes straight to ``finished``, its writes discarded."""
        if outcome is not None and outcome.status == "ok" and writes:
            self._written.put((task, outcome, list(writes)))
            return
        for write in writes:
            write.discard()
        if self.fail_fast and outcome is not None and outcome.status == "failed":
            self.failed.set()
        self.finished.put((task, outcome))

    def close(self) -> None:
        """Commit everything handed over, then end the thread."""
        if self._thread.is_alive():
            self._written.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (item := self._written.get()) is not None:
            task, outcome, writes = item
            start = time.perf_counter()
            try:
                for write in writes:
                    write.commit()
            except Exception as exc:  # the disk refused: this file fails, the batch goes on
                for write in writes:
                    write.discard()  # those not committed yet
                outcome = Outcome(task.input, task.output, "failed", error=_describe_error(exc, task.input),
                                  milliseconds=outcome.milliseconds, index=task.index)  # fmt: skip
                if self.fail_fast:
                    self.failed.set()
            else:
                outcome = dataclasses.replace(outcome, milliseconds=outcome.milliseconds + _ms_since(start))
            self.finished.put((task, outcome))


def _ended(finished: queue.SimpleQueue, timeout: float | None = None) -> list:
    """Every ``(task, outcome)`` in ``finished``, after waiting up to ``timeout``
    seconds for the first (None: not waiting)."""
    ended = []
    if timeout is not None:
        try:
            ended.append(finished.get(timeout=timeout))
        except queue.Empty:
            return ended
    while not finished.empty():
        ended.append(finished.get())
    return ended


class _InlineExecutor(_Executor):
    """This process, one file at a time: ``submit`` filters the file here, and a
    signal interrupts it; its output is put in place by a :class:`_Committer`
    while the next file is filtered."""

    capacity = 2  # the file filtered here, and the one before it, being put in place

    def __init__(self, control: _Control) -> None:
        self._control = control
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        self._committer = _Committer(self._finished, control.fail_fast)
        self._pending = 0
        self._cut_off: list[Task] = []
        self._before = set(threading.enumerate())

    def start(self, settings: FilterSettings, output: OutputSettings) -> None:
        self._settings, self._output = settings, output
        self._committer.start()

    def submit(self, task: Task) -> None:
        control = self._control
        outcome, writes = None, []
        control.raise_now = True
        try:
            if control.stopping() or self._committer.failed.is_set():  # raise_now is set: a signal
                return  # from here on interrupts the file
            with images.deferred_commits() as writes:
                outcome = process_one(task, self._settings, self._output, progress=control.checkpoint)
        except (_Interrupted, KeyboardInterrupt):
            control.signum = control.signum or signal.SIGINT
            self._cut_off.append(task)
            outcome = None
        finally:
            control.raise_now = False  # no signal raises from here on
        if outcome is None:
            for write in writes:
                write.discard()
            return
        self._pending += 1
        self._committer.hand_over(task, outcome, writes)

    def __len__(self) -> int:
        return self._pending + len(self._cut_off)

    def results(self, timeout: float) -> Iterator[Outcome]:
        if not self._pending:
            return
        ended = _ended(self._finished, timeout)
        self._pending -= len(ended)
        for _, outcome in ended:
            yield outcome

    def cancel(self) -> tuple[list[Outcome], list[Task]]:
        self._committer.close()
        sent = [outcome for _, outcome in _ended(self._finished)]
        self._pending = 0
        if self._cut_off:
            _join_threads_started_since(self._before)
        return sent, self._cut_off


# --- threads -----------------------------------------------------------------


class _Abandoned(BaseException):
    """Raised at a checkpoint of a file filtered on a thread once the batch stops."""


class _ThreadExecutor(_Executor):
    """Files on ``jobs`` threads of this process, each taking the next file itself.

    Pillow's decoders and encoders (to a file) and the engine's NumPy calls
    release the GIL, so the files are filtered in parallel for much of their
    time, without the start-up cost of worker processes. The threads live
    for the whole run and take their files from a queue kept ``jobs`` files
    ahead: a thread that finishes one file starts the next at once, instead
    of waiting for this thread to get the GIL and hand it over (which, with
    a thread started per file, cost so much that two jobs ran little faster
    than one). Files waiting in the queue hold no image.

    A thread that has written a file's output hands it to a
    :class:`_Committer` and starts its next file.

    Threads cannot be killed: once the batch stops on a signal (or is
    cancelled), a file in progress is abandoned at the engine's next
    checkpoint, always before its output is written (a file being encoded
    completes, and so does one whose output is written and waits to be put
    in place), and the files still queued are not started. ``cancel``
    returns when every thread, and every engine thread of an abandoned
    file, has ended.
    """

    def __init__(self, jobs: int, control: _Control) -> None:
        self.jobs = jobs
        self.capacity = 2 * jobs
        self._control = control
        self._stop = threading.Event()
        self._waiting: queue.SimpleQueue = queue.SimpleQueue()  # tasks, then a None per thread
        self._finished: queue.SimpleQueue = queue.SimpleQueue()  # (task, outcome or None if not done)
        self._committer = _Committer(self._finished, control.fail_fast)
        self._threads: list[threading.Thread] = []
        self._pending = 0
        self._cut_off: list[Task] = []
        self._before = set(threading.enumerate())

    def start(self, settings: FilterSettings, output: OutputSettings) -> None:
        self._settings, self._output = _share_of_cpus(settings, self.jobs), output
        for number in range(self.jobs):
            thread = threading.Thread(target=self._work, name=f"convfilter-batch-{number}")
            self._threads.append(thread)
            thread.start()
        self._committer.start()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._control.signalled

    def _checkpoint(self, fraction: float) -> None:  # noqa: ARG002 - a progress callback
        if self._stopping():
            raise _Abandoned

    def _work(self) -> None:
        while (task := self._waiting.get()) is not None:
            outcome, writes = None, []
            try:
                if not (self._stopping() or self._committer.failed.is_set()):
                    with images.deferred_commits() as writes:
                        outcome = process_one(task, self._settings, self._output, progress=self._checkpoint)
            except _Abandoned:
                pass
            finally:
                self._committer.hand_over(task, outcome, writes)

    def submit(self, task: Task) -> None:
        self._pending += 1
        self._waiting.put(task)

    def __len__(self) -> int:
        return self._pending

    def results(self, timeout: float) -> Iterator[Outcome]:
        ended = _ended(self._finished, timeout)
        self._pending -= len(ended)
        for task, outcome in ended:
            if outcome is None:
                self._cut_off.append(task)
            else:
                yield outcome

    def cancel(self) -> tuple[list[Outcome], list[Task]]:
        self._stop.set()
        for _ in self._threads:
            self._waiting.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
        self._committer.close()  # after the threads: it puts in place all they wrote
        sent = []
        for task, outcome in _ended(self._finished):
            if outcome is None:
                self._cut_off.append(task)
            else:
                sent.append(outcome)
        self._pending = 0
        if self._cut_off:
            _join_threads_started_since(self._before)
        return sent, self._cut_off


def _join_threads_started_since(before: set[threading.Thread], timeout: float = 30.0) -> None:
    """Wait (up to ``timeout`` seconds in all) for the non-daemon threads started since
    ``before`` was taken: the engine's threads of an interrupted file each finish
    their piece and end."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread not in before and not thread.daemon and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


# --- worker processes --------------------------------------------------------


class _Terminated(SystemExit):
    """A worker's exit on SIGTERM; it unwinds through images.write_atomically, which
    removes its temporary file."""


def _worker_main(conn, settings: FilterSettings, output: OutputSettings) -> None:
    """A worker: ignores SIGINT (the parent decides), exits cleanly on SIGTERM.

    SIGTERM raises :class:`_Terminated` where the worker is; if that is inside
    a finalizer, where it cannot be raised (see :mod:`convfilter.interrupts`), the
    file's next checkpoint raises it again.
    """
    terminated: list[int] = []

    def on_sigterm(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
        terminated.append(signum)
        raise _Terminated(128 + signum)

    def checkpoint(fraction: float) -> None:  # noqa: ARG001 - a progress callback
        if terminated:
            raise _Terminated(128 + terminated[0])

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reuse_freed_memory()
    with signals_routed((signal.SIGTERM,), on_sigterm, _Terminated):
        while not terminated:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            conn.send(process_one(task, settings, output, progress=checkpoint))


def _context():
    """forkserver where there is one (no fork of a threaded parent), else spawn."""
    import multiprocessing  # here: a batch on threads has no use for it, and it takes 25 ms to import

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["convfilter.pipeline"])
        return context
    return multiprocessing.get_context("spawn")


class _Worker:
    """One worker process and its end of a pipe; ``task`` is the file it holds, if any."""

    def __init__(self, context, settings: FilterSettings, output: OutputSettings) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, settings, output),
                                       name="convfilter-batch-worker", daemon=True)  # fmt: skip
        self.process.start()
        child.close()
        self.task: Task | None = None

    def send(self, task: Task) -> bool:
        try:
            self.conn.send(task)
        except OSError:
            return False
        self.task = task
        return True

    def receive(self) -> Outcome | None:
        """The outcome it sent, or None when it died."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            return None

    def end(self, *, polite: bool) -> None:
        """Stop an idle worker (``polite``), or terminate a busy one: SIGTERM lets it remove
        its temporary file; SIGKILL follows if it does not exit within seconds."""
        if polite:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(2)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def cause_of_death(self) -> str:
        self.process.join(1)
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = ", out of memory?" if -code == signal.SIGKILL else ""
            return f"worker process died ({name}{hint}) while processing this file"
        return f"worker process exited (code {code}) while processing this file"


class _PoolExecutor(_Executor):
    """``jobs`` worker processes given one file each: at most ``jobs`` images in memory.

    A worker that dies fails only the file it held and is replaced. On
    ``cancel``, busy workers are terminated (their temporary files are
    swept when the tasks are settled).
    """

    def __init__(self, jobs: int) -> None:
        self.capacity = jobs
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._busy: dict[object, _Worker] = {}
        self._lost_at_start = 0

    def start(self, settings: FilterSettings, output: OutputSettings) -> None:
        self._context = _context()
        self._settings, self._output = _share_of_cpus(settings, self.capacity), output
        for _ in range(self.capacity):
            self._replace(None)

    def _replace(self, worker: _Worker | None) -> None:
        if worker is not None:
            self._workers.remove(worker)
        fresh = _Worker(self._context, self._settings, self._output)
        self._workers.append(fresh)
        self._idle.append(fresh)

    def submit(self, task: Task) -> None:
        while True:
            worker = self._idle.pop()
            if worker.send(task):
                self._busy[worker.conn] = worker
                return
            # It died before it was given anything: the task goes to a fresh worker.
            self._lost_at_start += 1
            if self._lost_at_start > 2 * self.capacity:
                raise BatchError("worker processes keep dying before their first file")
            worker.end(polite=False)
            self._replace(worker)

    def __len__(self) -> int:
        return len(self._busy)

    def results(self, timeout: float) -> Iterator[Outcome]:
        busy = self._busy
        by_sentinel = {w.process.sentinel: w for w in busy.values()}
        from multiprocessing import connection

        for item in connection.wait(list(busy) + list(by_sentinel), timeout=timeout):
            worker = busy.get(item) or by_sentinel.get(item)
            if worker is None or worker.conn not in busy:
                continue  # its pipe and its sentinel were both ready
            del busy[worker.conn]
            task, worker.task = worker.task, None
            outcome = worker.receive()
            if outcome is not None:
                self._idle.append(worker)
                yield outcome
                continue
            worker.end(polite=False)
            _sweep_temporary_files([task])
            yield Outcome(task.input, task.output, "failed", error=worker.cause_of_death(), index=task.index)
            self._replace(worker)

    def cancel(self) -> tuple[list[Outcome], list[Task]]:
        sent = []
        for worker in list(self._busy.values()):  # results sent while the loop was stopping
            outcome = worker.receive()
            if outcome is not None:
                del self._busy[worker.conn]
                sent.append(outcome)
        in_flight = [w.task for w in self._busy.values() if w.task is not None]
        for worker in self._workers:
            worker.end(polite=worker.conn not in self._busy)
        return sent, in_flight


# --- Dask --------------------------------------------------------------------


def _worker_settings(settings: FilterSettings) -> FilterSettings:
    """``settings`` for a Dask worker: the engine on one thread unless ``settings.threads``
    is given (a worker's machine and its other workers are unknown here)."""
    threads = 1 if settings.threads is None else settings.threads
    return dataclasses.replace(settings, threads=threads)


class _DaskExecutor(_Executor):
    """Tasks on a Dask cluster (:class:`~convfilter.cluster.Connection`), at most
    twice as many at a time as it has threads. ``"local"`` starts ``jobs``
    single-threaded worker processes. ``cancel`` cancels the waiting tasks
    and closes the client (a local cluster's workers end with it).

    Raises
    ------
    SchedulerError
        Dask missing, a malformed address, or a scheduler that cannot be reached.
    """

    def __init__(self, address: str, jobs: int) -> None:
        self.connection = Connection(address, jobs)
        self.client = self.connection.client
        self._running: dict[str, tuple[object, Task]] = {}
        self._finished: queue.SimpleQueue = queue.SimpleQueue()

    def close(self) -> None:
        self.connection.close()

    def start(self, settings: FilterSettings, output: OutputSettings) -> None:
        self._shared = self.client.scatter([_worker_settings(settings), output], broadcast=True)
        self.capacity = max(2, 2 * sum(self.client.nthreads().values()))

    def submit(self, task: Task) -> None:
        key = f"convfilter-{task.index}-{os.urandom(6).hex()}"
        future = self.client.submit(process_one, task, self._shared[0], self._shared[1], key=key)
        self._running[key] = (future, task)
        future.add_done_callback(self._finished.put)

    def __len__(self) -> int:
        return len(self._running)

    def results(self, timeout: float) -> Iterator[Outcome]:
        try:
            future = self._finished.get(timeout=timeout)
        except queue.Empty:
            return
        entry = self._running.pop(future.key, None)
        if entry is not None:
            yield _dask_outcome(future, entry[1])

    def cancel(self) -> tuple[list[Outcome], list[Task]]:
        in_flight = [task for _, task in self._running.values()]
        if self._running:
            self.client.cancel([future for future, _ in self._running.values()])
        self.connection.close(abandon=True)
        return [], in_flight


def _dask_outcome(future, task: Task) -> Outcome:
    if future.status == "finished":
        return future.result()
    try:
        error = future.exception()
        reason = f"{type(error).__name__}: {error}"
    except Exception as exc:  # cancelled or lost
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Outcome(task.input, task.output, "failed", error=f"Dask task failed: {reason}", index=task.index)


