"""Many files at once: input expansion, output naming, pre-flight checks, workers, summary.

The work is split in two steps so that nothing is written before every
check has passed:

1. :func:`plan_batch` expands the inputs (files, directories, glob
   patterns, path lists), names every output from a template, and refuses
   the whole batch if two inputs would write the same output, an output
   would replace an input, or outputs exist already. It holds path strings
   only, never images.
2. :func:`run_batch` runs :func:`pipeline.process_file` on each planned file:
   in this process (``jobs=1``), in worker processes fed one file at a time
   (``jobs>1``), or on a Dask cluster (``scheduler=...``). SIGINT and SIGTERM
   stop it cleanly: workers are ended, temporary files are removed, and the
   summary says what finished.

Example
-------
>>> template = NameTemplate("{stem}-{kernel}{suffix}")
>>> template.render(stem="cat", suffix=".png", name="cat.jpg", kernel="blur", index=1)
'cat-blur.png'
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import multiprocessing
import os
import queue
import re
import signal
import string
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence

from . import images
from .allocator import reuse_freed_memory
from .pipeline import FilterSettings, OutputSettings, process_file

__all__ = [
    "BatchError",
    "TemplateError",
    "PlanError",
    "SchedulerError",
    "PLACEHOLDERS",
    "NameTemplate",
    "Task",
    "Outcome",
    "Plan",
    "BatchSummary",
    "image_extensions",
    "read_path_list",
    "kernel_label",
    "format_suffix",
    "plan_batch",
    "process_one",
    "run_batch",
    "default_jobs",
    "require_dask",
    "is_scheduler_address",
]

#: The placeholders a ``--name`` template may use.
PLACEHOLDERS: tuple[str, ...] = ("stem", "suffix", "name", "kernel", "index")

#: How many entries an error lists before saying "and N more".
_LISTED = 10

#: The file suffix written for a ``--format`` (other formats: their first extension).
_PREFERRED_SUFFIX = {"JPEG": ".jpg", "TIFF": ".tif", "PNG": ".png", "PPM": ".ppm"}


class BatchError(ValueError):
    """A batch that cannot run as asked; nothing has been written."""


class TemplateError(BatchError):
    """A ``--name`` template that is not valid (a usage error)."""


class PlanError(BatchError):
    """The pre-flight checks refused the batch; the message lists the files."""


class SchedulerError(BatchError):
    """Dask is not installed, or the scheduler cannot be reached."""


# ---------------------------------------------------------------------------
# Output names
# ---------------------------------------------------------------------------


class NameTemplate:
    """An output name template such as ``{stem}-{kernel}{suffix}``.

    Placeholders are :data:`PLACEHOLDERS`; ``{index}`` takes a format spec
    (``{index:04d}``). Literal ``/`` makes sub-folders. Absolute templates
    and ``..`` are refused, and placeholder values never contain a path
    separator, so a rendered name always stays inside the output directory.

    Raises
    ------
    TemplateError
        Unknown placeholder, bad braces or format spec, absolute path, ``..``.

    >>> NameTemplate("{index:03d}_{stem}{suffix}").render(
    ...     stem="a/b", suffix=".png", name="x", kernel="k", index=7)
    '007_a_b.png'
    """

    def __init__(self, text: str) -> None:
        if not text:
            raise TemplateError("the --name template is empty")
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"bad --name template {text!r}: {exc}") from None
        self.text = text
        self._parts: list[tuple[str, str | None, str]] = []
        for literal, field_name, spec, conversion in parsed:
            if field_name is not None:
                if field_name not in PLACEHOLDERS:
                    shown = "{" + field_name + "}" if field_name else "{}"
                    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                    raise TemplateError(
                        f"unknown placeholder {shown} in --name {text!r}; use {known}"
                    )
                if conversion is not None or "{" in (spec or ""):
                    raise TemplateError(f"placeholder {{{field_name}}} in --name {text!r} takes no '!' or nested braces")
                if any(int(n) > _MAX_NAME_LENGTH for n in re.findall(r"\d+", spec or "")):
                    raise TemplateError(
                        f"format {{{field_name}:{spec}}} in --name {text!r} asks for a name longer "
                        f"than {_MAX_NAME_LENGTH} characters"
                    )
            self._parts.append((literal, field_name, spec or ""))
        sample = self.render(stem="stem", suffix=".png", name="stem.png", kernel="k", index=1)
        _check_relative(sample, f"--name {text!r}")

    def render(self, *, stem: str, suffix: str, name: str, kernel: str, index: int) -> str:
        """The template with every placeholder replaced by its sanitised value."""
        values: dict[str, object] = {
            "stem": _safe_component(stem),
            "suffix": _safe_component(suffix),
            "name": _safe_component(name),
            "kernel": _safe_component(kernel),
            "index": index,
        }
        pieces = []
        for literal, field_name, spec in self._parts:
            pieces.append(literal)
            if field_name is not None:
                try:
                    pieces.append(format(values[field_name], spec))
                except (ValueError, TypeError) as exc:
                    raise TemplateError(
                        f"bad format {{{field_name}:{spec}}} in --name {self.text!r}: {exc}"
                    ) from None
        return "".join(pieces)

    def check_format(self, fmt: str | None) -> None:
        """Refuse a template whose outputs would have no format: no known extension, no ``fmt``.

        Raises
        ------
        TemplateError
            Naming ``{suffix}`` and ``--format`` as the ways out.
        """
        if fmt:
            return
        sample = self.render(stem="stem", suffix=".png", name="stem.png", kernel="k", index=1)
        if images.format_for_extension(os.path.splitext(sample)[1]) is None:
            raise TemplateError(
                f"--name {self.text!r} gives the outputs no image extension, so no format to "
                "write; add {suffix} (or an extension such as .png), or give --format"
            )


#: Longest file name most file systems allow; a format width beyond it is refused.
_MAX_NAME_LENGTH = 255

_SEPARATORS = re.compile(r"[/\\\x00-\x1f\x7f]")


def _safe_component(value: str) -> str:
    """A placeholder value that cannot act as a path: no separators, not ``.``/``..``."""
    text = _SEPARATORS.sub("_", value)
    return "_" if text in (".", "..") else text


def _check_relative(name: str, what: str) -> str:
    """``name`` normalised, or TemplateError when it is absolute, uses ``..`` or is empty."""
    parts = re.split(r"[/\\]", name)
    if os.path.isabs(name) or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise TemplateError(f"{what} gives an absolute path; names are relative to the output directory")
    if ".." in parts:
        raise TemplateError(f"{what} uses '..'; outputs must stay inside the output directory")
    if not parts[-1] or parts[-1] == ".":
        raise TemplateError(f"{what} gives a name ending in a separator; add a file name")
    return os.path.normpath(name)


def kernel_label(specs: Sequence[str]) -> str:
    """A filesystem-safe name for kernel specs, for ``{kernel}``.

    Presets keep their name (``:`` and ``,`` become ``-``), ``@FILE`` becomes
    the file's stem, an inline matrix ``matrix-`` and a short hash of its
    text; several kernels are joined by ``+``.

    >>> kernel_label(["gaussian:1.5,9", "Sobel-X"])
    'gaussian-1.5-9+sobel-x'
    >>> kernel_label(["0 -1 0; -1 5 -1; 0 -1 0"])[:7]
    'matrix-'
    """
    labels = []
    for spec in specs:
        text = spec.strip()
        if text.startswith("@"):
            base = os.path.basename(text[1:].rstrip("/\\"))
            label = os.path.splitext(base)[0] or "file"
        elif re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*(:[0-9.,eE+ -]*)?", text):
            label = re.sub(r"[:,\s]+", "-", text.lower()).strip("-")
        else:
            label = "matrix-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        label = re.sub(r"[^A-Za-z0-9._+-]+", "_", label).lstrip(".-") or "kernel"
        labels.append(label)
    return "+".join(labels)[:120] or "kernel"


def format_suffix(fmt: str, input_suffix: str = "") -> str:
    """The file suffix for writing ``fmt``; the input's own when it already fits.

    >>> format_suffix("JPEG"), format_suffix("JPEG", ".jpeg"), format_suffix("png", ".jpg")
    ('.jpg', '.jpeg', '.png')
    """
    name = images.output_format(None, fmt)
    extensions = _registered_extensions()
    if input_suffix and extensions.get(input_suffix.lower()) == name:
        return input_suffix
    if name in _PREFERRED_SUFFIX:
        return _PREFERRED_SUFFIX[name]
    own = sorted(ext for ext, f in extensions.items() if f == name)
    if not own:
        raise BatchError(f"format {name} has no file extension; give --name with a suffix")
    return own[0]


def _registered_extensions() -> dict[str, str]:
    from PIL import Image

    return Image.registered_extensions()


def image_extensions(formats: Sequence[str] = images.DEFAULT_FORMATS) -> frozenset[str]:
    """Lower-case suffixes (``.png``) Pillow registers for the allowed formats."""
    allowed = {f.upper() for f in formats}
    return frozenset(ext for ext, fmt in _registered_extensions().items() if fmt in allowed)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    path: str
    folder: str  # sub-folder recreated under OUT_DIR with -r ("" for none)


@dataclass
class _Expansion:
    found: list[_Found] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)


def read_path_list(stream: BinaryIO, *, null: bool = False, chunk: int = 1 << 16) -> Iterator[str]:
    """Paths from a list, one a line (or NUL-separated), read a chunk at a time.

    Empty entries are ignored; with newlines a trailing ``\\r`` is dropped.
    Bytes that are not valid in the file-system encoding are kept (as
    :func:`os.fsdecode` does).

    >>> import io
    >>> list(read_path_list(io.BytesIO(b"a.png\\0dir/b c.png\\0"), null=True))
    ['a.png', 'dir/b c.png']
    """
    separator = b"\0" if null else b"\n"
    rest = b""
    while True:
        data = stream.read(chunk)
        if not data:
            break
        rest += data
        *entries, rest = rest.split(separator)
        for entry in entries:
            path = _list_entry(entry, null)
            if path:
                yield path
    path = _list_entry(rest, null)
    if path:
        yield path


def _list_entry(entry: bytes, null: bool) -> str:
    if not null and entry.endswith(b"\r"):
        entry = entry[:-1]
    return os.fsdecode(entry)


_MAGIC = re.compile(r"[*?[]")


def _expand(
    inputs: Iterable[str],
    path_list: Iterable[str],
    *,
    recursive: bool,
    extensions: frozenset[str],
    exclude: str | None,
) -> _Expansion:
    result = _Expansion()
    for text in inputs:
        if os.path.lexists(text) or not _MAGIC.search(text):
            _expand_named(text, result, recursive=recursive, extensions=extensions, exclude=exclude)
        else:
            _expand_glob(text, result, recursive=recursive, extensions=extensions, exclude=exclude)
    for text in path_list:
        _expand_named(text, result, recursive=recursive, extensions=extensions, exclude=exclude)
    return result


def _expand_named(text, result, *, recursive, extensions, exclude) -> None:
    """A path given by name: a file is an input whatever its extension; a directory is walked."""
    if os.path.isdir(text):
        _walk(text, text, result, recursive=recursive, extensions=extensions, exclude=exclude)
    elif os.path.lexists(text):
        result.found.append(_Found(text, ""))
    else:
        result.failed.append((text, "no such file or directory"))


def _expand_glob(pattern, result, *, recursive, extensions, exclude) -> None:
    """A pattern: matched files are filtered by extension like a directory's files."""
    base = _glob_base(pattern)
    matches = sorted(glob.iglob(pattern, recursive=True))
    if not matches:
        result.failed.append((pattern, "no files match this pattern"))
        return
    for path in matches:
        if os.path.isdir(path):
            if not _same_place(path, exclude):  # OUT_DIR itself may match
                _walk(path, base, result, recursive=recursive, extensions=extensions, exclude=exclude)
        else:
            folder = _folder(path, base) if recursive else ""
            _add_walked(path, folder, result, extensions)


def _glob_base(pattern: str) -> str:
    """The leading directories of a pattern that hold no wildcard."""
    parts = re.split(r"[/\\]", pattern)
    base = []
    for part in parts[:-1]:
        if _MAGIC.search(part):
            break
        base.append(part)
    joined = "/".join(base)
    if not joined:
        return "/" if pattern.startswith("/") and base else "."
    return joined


def _folder(path: str, base: str) -> str:
    folder = os.path.relpath(os.path.dirname(os.path.abspath(path)), os.path.abspath(base))
    if folder == "." or folder.startswith(".."):
        return ""
    return folder


def _walk(top, base, result, *, recursive, extensions, exclude) -> None:
    """Images under ``top``, depth first in name order (a folder's files before its
    sub-folders). Hidden entries, ``exclude`` and symbolic links to folders are not
    walked. Each folder is read once with ``os.scandir``: no ``stat`` per file."""
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            result.failed.append((directory, _os_reason(error)))
            continue
        folder = _folder(os.path.join(directory, "x"), base) if recursive else ""
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if recursive and not entry.is_symlink() and not _same_place(entry.path, exclude):
                    subdirs.append(entry.path)
                continue
            _add_walked(entry.path, folder, result, extensions, entry)
        stack.extend(reversed(subdirs))


def _same_place(path: str, other: str | None) -> bool:
    if other is None:
        return False
    return os.path.realpath(path) == other


def _add_walked(path: str, folder: str, result: _Expansion, extensions: frozenset[str],
                entry: os.DirEntry | None = None) -> None:  # fmt: skip
    if os.path.splitext(path)[1].lower() not in extensions:
        result.skipped.append((path, "not an image file"))
        return
    try:
        regular = entry.is_file() if entry is not None else os.path.isfile(path)
    except OSError:
        regular = False
    if regular:
        result.found.append(_Found(path, folder))
    else:
        result.skipped.append((path, "not a regular file"))


def _os_reason(error: OSError) -> str:
    return error.strerror or str(error)


# ---------------------------------------------------------------------------
# The plan and its checks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One file to process: names as shown to the user, and absolute paths for workers.

    ``replaces`` is the inode of the file the output replaces (None when
    there is none): after an interruption, an output with another inode is
    known to be complete, since outputs are only ever renamed into place.
    """

    index: int
    input: str
    output: str
    source: str
    destination: str
    replaces: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one file (``status``: ``ok``, ``skipped`` or ``failed``).

    ``notes`` says what was converted or could not be kept (as ``apply`` prints them).
    """

    input: str
    output: str | None
    status: str
    error: str | None = None
    milliseconds: float = 0.0
    reason: str | None = None
    index: int | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The ``--json`` line of one file."""
        return {
            "type": "file",
            "index": self.index,
            "input": self.input,
            "output": self.output,
            "status": self.status,
            "error": self.error,
            "reason": self.reason,
            "notes": list(self.notes),
            "milliseconds": round(self.milliseconds, 3),
        }


class _Paths:
    """Path look-ups for planning, each folder resolved once (a million files share
    a few folders; ``os.path.realpath`` costs a system call per path component)."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self._real: dict[str, str] = {}

    def absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.cwd, path))

    def real_folder(self, folder: str) -> str:
        found = self._real.get(folder)
        if found is None:
            found = self._real[folder] = os.path.realpath(folder)
        return found

    def entry(self, absolute: str) -> str:
        """The directory entry an absolute path names: its folder resolved, its name kept."""
        folder, name = os.path.split(absolute)
        return os.path.normcase(os.path.join(self.real_folder(folder), name))

    def inside(self, absolute: str, folder_real: str) -> bool:
        parent = self.real_folder(os.path.dirname(absolute))
        return parent == folder_real or parent.startswith(folder_real.rstrip(os.sep) + os.sep)


@dataclass
class Plan:
    """Everything decided before any work: files to run, skipped, failed already."""

    out_dir: str
    tasks: list[Task]
    skipped: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)


def plan_batch(
    inputs: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    path_list: Iterable[str] = (),
    recursive: bool = False,
    template: str = "{stem}{suffix}",
    kernel_specs: Sequence[str] = (),
    fmt: str | None = None,
    formats: Sequence[str] = images.DEFAULT_FORMATS,
    in_place: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
) -> Plan:
    """Expand the inputs, name the outputs and run every pre-flight check.

    ``inputs`` are files, directories (their images; sub-folders with
    ``recursive``) or glob patterns (``**`` included); ``path_list`` holds
    more paths, taken literally. Files met in a directory or by a pattern
    are kept when their extension is one of the ``formats``' (the others are
    skipped); a file named explicitly is always tried. The same file named
    twice is processed once. Nothing is written.

    Raises
    ------
    TemplateError
        A bad ``template`` (before anything is read).
    PlanError
        Two inputs would write one output; an output would replace an input
        (its own is allowed with ``in_place``); outputs exist and neither
        ``overwrite`` nor ``skip_existing`` is given. The message lists them.
    BatchError
        Conflicting options, or OUT_DIR is not a directory.
    """
    if overwrite and skip_existing:
        raise BatchError("give either --overwrite or --skip-existing, not both")
    name_template = NameTemplate(template)
    name_template.check_format(fmt)
    out_text = os.fspath(out_dir)
    if os.path.exists(out_text) and not os.path.isdir(out_text):
        raise BatchError(f"'{out_text}' is not a directory")
    out_real = os.path.realpath(out_text)
    label = kernel_label(kernel_specs)
    suffix_for_format = format_suffix(fmt) if fmt else None
    expansion = _expand(inputs, path_list, recursive=recursive,
                        extensions=image_extensions(formats), exclude=out_real)  # fmt: skip

    plan = Plan(out_dir=out_text, tasks=[])
    plan.skipped = [Outcome(p, None, "skipped", reason=r) for p, r in expansion.skipped]
    plan.failed = [Outcome(p, None, "failed", error=r) for p, r in expansion.failed]
    paths = _Paths()
    seen: set[str] = set()
    planned: list[Task] = []
    for found in expansion.found:
        source = paths.absolute(found.path)
        key = os.path.normcase(source)
        if key in seen:
            continue
        seen.add(key)
        index = len(seen)
        name = os.path.basename(found.path.rstrip("/\\")) or found.path
        stem, suffix = os.path.splitext(name)
        if fmt:
            suffix = format_suffix(fmt, suffix) if suffix else suffix_for_format
        rendered = name_template.render(stem=stem, suffix=suffix, name=name, kernel=label, index=index)
        relative = _check_relative(os.path.join(found.folder, rendered), f"the name of '{found.path}'")
        output = os.path.join(out_text, relative)
        destination = paths.absolute(output)
        if not paths.inside(destination, out_real):
            raise PlanError(
                f"output '{output}' of '{found.path}' would be written outside '{out_text}' "
                "(through a symbolic link)"
            )
        if not fmt:
            suffix = os.path.splitext(output)[1]
            if images.format_for_extension(suffix) is None:
                error = images.unknown_extension_message(suffix)
                plan.failed.append(Outcome(found.path, output, "failed", error=error, index=index))
                continue
        planned.append(Task(index, found.path, output, source, destination))
    del expansion, seen
    _check_collisions(planned, paths)
    plan.tasks = _check_overwrites(planned, paths, in_place=in_place, overwrite=overwrite,
                                   skip_existing=skip_existing, skipped=plan.skipped)  # fmt: skip
    return plan


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def _listing(lines: list[str]) -> str:
    """The first entries of a refusal, on the error's one line."""
    more = f"; and {len(lines) - _LISTED} more" if len(lines) > _LISTED else ""
    return "; ".join(lines[:_LISTED]) + more


def _some(names: Iterable[str], shown: int = 5) -> str:
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _check_collisions(tasks: list[Task], paths: _Paths) -> None:
    by_output: dict[str, Task | list[Task]] = {}
    clashing: list[str] = []
    for task in tasks:
        key = paths.entry(task.destination)
        earlier = by_output.get(key)
        if earlier is None:
            by_output[key] = task  # a single task, not a list: a million of them stay small
        elif isinstance(earlier, list):
            earlier.append(task)
        else:
            by_output[key] = [earlier, task]
            clashing.append(key)
    clashes = [by_output[key] for key in clashing]
    if clashes:
        lines = [f"{group[0].output} <- {_some(t.input for t in group)}" for group in clashes]
        raise PlanError(
            f"{len(clashes)} output{'s' if len(clashes) > 1 else ''} would be written by more "
            "than one input (change --name, e.g. add {index} or {kernel}, or use -r): "
            + _listing(lines)
        )


def _check_overwrites(
    tasks: list[Task], paths: _Paths, *, in_place: bool, overwrite: bool, skip_existing: bool,
    skipped: list[Outcome],
) -> list[Task]:
    inputs = {paths.entry(t.source): t for t in tasks}
    for t in tasks:  # an input that is a link: writing over its target loses its data too
        if os.path.islink(t.source):
            inputs.setdefault(os.path.realpath(t.source), t)
    replaced_inputs = []
    existing = []
    keep = []
    for task in tasks:
        target = paths.entry(task.destination)
        victim = inputs.get(target)
        if victim is not None:
            if victim is not task:
                replaced_inputs.append(f"{task.output} (from {task.input}) would replace input {victim.input}")
            elif not in_place:
                replaced_inputs.append(f"{task.output} would replace its input")
            else:
                keep.append(dataclasses.replace(task, replaces=_inode(task.destination)))
            continue
        inode = _inode(task.destination)
        if inode is not None:
            if skip_existing:
                skipped.append(Outcome(task.input, task.output, "skipped", reason="output exists",
                                       index=task.index))  # fmt: skip
                continue
            if not overwrite:
                existing.append(task.output)
            task = dataclasses.replace(task, replaces=inode)
        keep.append(task)
    if replaced_inputs:
        hint = "" if in_place else " (--in-place allows an output to replace its own input)"
        raise PlanError(
            f"{len(replaced_inputs)} output{'s' if len(replaced_inputs) > 1 else ''} would "
            f"overwrite an input{hint}: " + _listing(replaced_inputs)
        )
    if existing:
        raise PlanError(
            f"{len(existing)} output{'s exist' if len(existing) > 1 else ' exists'} already "
            "(use --overwrite to replace or --skip-existing to leave them): " + _listing(existing)
        )
    return keep


# ---------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------


def process_one(task: Task, settings: FilterSettings, output: OutputSettings) -> Outcome:
    """Filter one planned file with :func:`pipeline.process_file`; never raises for a bad file.

    The output's folder is created first. Runs in a worker process (or a
    Dask worker), so paths are the task's absolute ones.
    """
    start = time.perf_counter()
    try:
        os.makedirs(os.path.dirname(task.destination), exist_ok=True)
        result = process_file(task.source, task.destination, settings, output,
                              source_name=task.input, destination_name=task.output)  # fmt: skip
    except Exception as exc:  # one bad file must not stop the batch
        error = _describe_error(exc, task.input)
        return Outcome(task.input, task.output, "failed", error=error,
                       milliseconds=_ms_since(start), index=task.index)  # fmt: skip
    return Outcome(task.input, task.output, "ok", milliseconds=_ms_since(start), index=task.index,
                   notes=tuple(result.notes))  # fmt: skip


def _describe_error(exc: BaseException, name: str) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError):
        where = f"'{exc.filename}': " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, ValueError):
        text = f"internal error: {type(exc).__name__}: {text}"
    for prefix in (f"'{name}': ", f"'{name}' "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


# ---------------------------------------------------------------------------
# Running the plan
# ---------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """What a batch did: counts, failures, time; ``interrupted`` names the signal."""

    planned: int
    processed: int = 0
    skipped: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    noted: list[Outcome] = field(default_factory=list)  # processed files with notes
    unfinished: int = 0  # planned files neither processed nor failed (interrupted, --fail-fast)
    seconds: float = 0.0
    interrupted: str | None = None
    stopped_early: bool = False

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """The final ``--json`` line."""
        failures = sorted(self.failed, key=lambda o: (o.index is None, o.index or 0))
        return {
            "type": "summary",
            "processed": self.processed,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "unfinished": self.unfinished,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "interrupted": self.interrupted,
            "stopped_early": self.stopped_early,
            "failures": [{"input": o.input, "error": o.error} for o in failures],
            "noted": len(self.noted),
        }

    def to_text(self) -> str:
        """The summary people read: counts, time and rate, then the notes of each file
        (failures are reported one by one as they happen, on standard error)."""
        reasons: dict[str, int] = {}
        for outcome in self.skipped:
            reasons[outcome.reason or "skipped"] = reasons.get(outcome.reason or "skipped", 0) + 1
        detail = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        skipped = f"skipped {len(self.skipped)}" + (f" ({detail})" if detail else "")
        line = (
            f"processed {self.processed}, {skipped}, failed {len(self.failed)} "
            f"in {self.seconds:.2f} s ({self.images_per_second:.1f} images/s)"
        )
        lines = []
        if self.interrupted:
            lines.append(f"interrupted by {self.interrupted}; {self.unfinished} not processed")
        elif self.stopped_early:
            lines.append(f"stopped after the first failure (--fail-fast); {self.unfinished} not processed")
        lines.append(line)
        if self.noted:
            lines.append("notes:")
            for outcome in sorted(self.noted, key=lambda o: o.index or 0):
                lines += [_printable(f"  {outcome.input}: {note}") for note in outcome.notes]
        return "\n".join(lines)


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a file name cannot split a summary line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
        if self.signum is None:
            self.signum = signum
        if self.raise_now:
            self.raise_now = False
            raise _Interrupted(signum)


class _signals_to:
    """Route SIGINT and SIGTERM to ``control.handler`` for the duration (main thread only)."""

    def __init__(self, control: _Control, *, enabled: bool) -> None:
        self.control = control
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.saved: dict[int, object] = {}

    def __enter__(self) -> None:
        if self.enabled:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.saved[signum] = signal.signal(signum, self.control.handler)

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self.saved.items():
            signal.signal(signum, previous)


def default_jobs() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_batch(
    plan: Plan,
    settings: FilterSettings,
    output: OutputSettings = OutputSettings(),
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    scheduler: str | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    started: float | None = None,
    handle_signals: bool = True,
) -> BatchSummary:
    """Process every task of ``plan`` and return the summary; a bad file never raises.

    ``jobs`` > 1 runs that many worker processes, each given one file at a
    time, with the engine on one thread (unless ``settings.threads`` says
    otherwise): outputs are byte-identical whatever ``jobs`` is.
    ``scheduler`` (``"local"`` or a Dask scheduler address such as
    ``tcp://10.0.0.5:8786``) runs the same tasks on Dask instead.
    ``on_outcome`` sees each file's :class:`Outcome` as it happens (the
    plan's skipped and failed files first). ``started`` (a
    ``time.perf_counter()`` value) is when the clock of the summary starts.
    With ``handle_signals`` (in the main thread), SIGINT and SIGTERM stop
    the batch cleanly: workers are ended, no temporary file is left, and
    the summary's ``interrupted`` names the signal.

    Raises
    ------
    SchedulerError
        ``scheduler`` is given but Dask is not installed or not reachable.
    """
    start = time.perf_counter() if started is None else started
    summary = BatchSummary(planned=len(plan.tasks))
    report = on_outcome or (lambda outcome: None)

    def record(outcome: Outcome) -> None:
        if outcome.status == "ok":
            summary.processed += 1
            if outcome.notes:
                summary.noted.append(outcome)
        elif outcome.status == "skipped":
            summary.skipped.append(outcome)
        else:
            summary.failed.append(outcome)
        report(outcome)

    session = _DaskSession(scheduler, jobs) if scheduler is not None else None
    control = _Control(summary, fail_fast)
    try:
        for outcome in plan.skipped + plan.failed:
            record(outcome)
        failed_before = len(summary.failed)
        with _signals_to(control, enabled=handle_signals):
            if session is not None:
                _run_dask(plan.tasks, settings, output, session, record, control)
            elif jobs <= 1 or len(plan.tasks) <= 1:
                _run_here(plan.tasks, settings, output, record, control)
            else:
                threads = 1 if settings.threads is None else settings.threads
                _run_pool(plan.tasks, dataclasses.replace(settings, threads=threads), output,
                          min(jobs, len(plan.tasks)), record, control)  # fmt: skip
    finally:
        if session is not None:
            session.close()
    finished = summary.processed + len(summary.failed) - failed_before
    summary.unfinished = max(0, len(plan.tasks) - finished)
    if control.signalled:
        summary.interrupted = signal.Signals(control.signum).name
    elif fail_fast and summary.failed and summary.unfinished:
        summary.stopped_early = True
    summary.seconds = time.perf_counter() - start
    return summary


def _run_here(tasks, settings, output, record, control: _Control) -> None:
    """One file after another in this process; a signal interrupts the current file."""
    for task in tasks:
        control.raise_now = True
        try:
            if control.stopping():
                return
            outcome = process_one(task, settings, output)
        except (_Interrupted, KeyboardInterrupt):
            control.signum = control.signum or signal.SIGINT
            _settle([task], record)
            return
        finally:
            control.raise_now = False
        record(outcome)


# --- worker processes --------------------------------------------------------


def _worker_main(conn, settings: FilterSettings, output: OutputSettings) -> None:
    """A worker: ignores SIGINT (the parent decides), exits cleanly on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    reuse_freed_memory()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(process_one(task, settings, output))


def _exit_on_sigterm(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    # SystemExit unwinds through images.write_atomically, which removes its temporary file.
    raise SystemExit(128 + signum)


def _context():
    """forkserver where there is one (no fork of a threaded parent), else spawn."""
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


def _run_pool(tasks, settings, output, jobs: int, record, control: _Control) -> None:
    """Feed ``jobs`` worker processes one file each: at most ``jobs`` images in memory.

    A worker that dies fails only the file it held and is replaced. On a
    signal, busy workers are terminated and their temporary files swept;
    with --fail-fast, files in progress are allowed to finish.
    """
    context = _context()
    pending: Iterator[Task] = iter(tasks)
    workers: list[_Worker] = []
    idle: list[_Worker] = []
    busy: dict[object, _Worker] = {}
    lost_at_start = 0

    def replace(worker: _Worker | None) -> None:
        if worker is not None:
            workers.remove(worker)
        fresh = _Worker(context, settings, output)
        workers.append(fresh)
        idle.append(fresh)

    try:
        for _ in range(jobs):
            replace(None)
        while True:
            while idle and not control.stopping():
                task = next(pending, None)
                if task is None:
                    break
                worker = idle.pop()
                if not worker.send(task):  # died before it was given anything
                    lost_at_start += 1
                    if lost_at_start > 2 * jobs:
                        raise BatchError("worker processes keep dying before their first file")
                    worker.end(polite=False)
                    replace(worker)
                    pending = _chain_one(task, pending)
                    continue
                busy[worker.conn] = worker
            if not busy or control.signalled:
                return
            by_sentinel = {w.process.sentinel: w for w in busy.values()}
            for item in connection.wait(list(busy) + list(by_sentinel), timeout=0.2):
                worker = busy.get(item) or by_sentinel.get(item)
                if worker is None or worker.conn not in busy:
                    continue  # its pipe and its sentinel were both ready
                del busy[worker.conn]
                task, worker.task = worker.task, None
                outcome = worker.receive()
                if outcome is not None:
                    idle.append(worker)
                    record(outcome)
                    continue
                worker.end(polite=False)
                _sweep_temporary_files([task])
                record(Outcome(task.input, task.output, "failed", error=worker.cause_of_death(),
                               index=task.index))  # fmt: skip
                replace(worker)
    finally:
        for worker in list(busy.values()):  # results sent while the loop was stopping
            outcome = worker.receive()
            if outcome is not None:
                del busy[worker.conn]
                record(outcome)
        in_flight = [w.task for w in busy.values() if w.task is not None]
        for worker in workers:
            worker.end(polite=worker.conn not in busy)
        _settle(in_flight, record)


def _chain_one(first: Task, rest: Iterator[Task]) -> Iterator[Task]:
    yield first
    yield from rest


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


# --- Dask --------------------------------------------------------------------


class _DaskSession:
    """A Dask client, and the LocalCluster it started for ``"local"``.

    ``"local"`` runs ``jobs`` single-threaded worker processes on 127.0.0.1;
    its HTTP server takes any free port (``dashboard_address=None`` would
    still try 8787, and warn when another cluster has it).

    Raises
    ------
    SchedulerError
        Dask missing, a malformed address, or a scheduler that cannot be reached.
    """

    def __init__(self, address: str, jobs: int) -> None:
        require_dask(address)
        import logging

        import distributed

        self.cluster = None
        self.client = None
        if address == "local":
            try:
                self.cluster = distributed.LocalCluster(
                    n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=":0", silence_logs=logging.ERROR,
                )  # fmt: skip
            except Exception as exc:  # distributed raises RuntimeError, OSError, ...
                raise SchedulerError(f"cannot start a local Dask cluster: {_first_line(exc)}") from None
            address = self.cluster.scheduler_address
        try:
            self.client = distributed.Client(address, timeout="10s", set_as_default=False)
        except Exception as exc:
            self.close()
            raise SchedulerError(f"cannot reach the Dask scheduler at {address}: {_first_line(exc)}") from None

    def close(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _run_dask(tasks, settings, output, session: _DaskSession, record, control: _Control) -> None:
    """The tasks on Dask, at most twice as many at a time as the cluster has threads.

    Workers must see the same paths (a shared file system): tasks carry
    absolute paths. On a signal, waiting tasks are cancelled, the session is
    closed (a local cluster's workers end with it), and temporary files of
    the tasks that were running are removed.
    """
    client = session.client
    running: dict[str, tuple[object, Task]] = {}
    try:
        threads = 1 if settings.threads is None else settings.threads
        shared = client.scatter([dataclasses.replace(settings, threads=threads), output], broadcast=True)
        window = max(2, 2 * sum(client.nthreads().values()))
        finished: queue.SimpleQueue = queue.SimpleQueue()
        pending = iter(tasks)
        while True:
            while len(running) < window and not control.stopping():
                task = next(pending, None)
                if task is None:
                    break
                key = f"convfilter-{task.index}-{os.urandom(6).hex()}"
                future = client.submit(process_one, task, shared[0], shared[1], key=key)
                running[key] = (future, task)
                future.add_done_callback(finished.put)
            if not running or control.signalled:
                return
            try:
                future = finished.get(timeout=0.2)
            except queue.Empty:
                continue
            entry = running.pop(future.key, None)
            if entry is not None:
                record(_dask_outcome(future, entry[1]))
    finally:
        in_flight = [task for _, task in running.values()]
        if running:
            client.cancel([future for future, _ in running.values()])
        session.close()
        _settle(in_flight, record)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _dask_outcome(future, task: Task) -> Outcome:
    if future.status == "finished":
        return future.result()
    try:
        error = future.exception()
        reason = f"{type(error).__name__}: {error}"
    except Exception as exc:  # cancelled or lost
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Outcome(task.input, task.output, "failed", error=f"Dask task failed: {reason}", index=task.index)


_ADDRESS = re.compile(r"^(?:[a-z]+://)?[^\s/]+:\d+$")


def is_scheduler_address(text: str) -> bool:
    """True for ``"local"`` and ``[PROTOCOL://]HOST:PORT``.

    >>> is_scheduler_address("tcp://10.0.0.5:8786"), is_scheduler_address("10.0.0.5")
    (True, False)
    """
    return text == "local" or bool(_ADDRESS.match(text))


def require_dask(address: str = "local") -> None:
    """Check that Dask's scheduler is installed and ``address`` looks like one.

    ``address`` is ``"local"`` or ``[PROTOCOL://]HOST:PORT``.

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
