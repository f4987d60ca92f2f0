"""Planning a batch: inputs expanded, outputs named, every pre-flight check run.

:func:`plan_batch` decides everything before anything is written: it
expands files, directories, glob patterns and path lists, names each
output from a :class:`NameTemplate`, and refuses the whole batch if two
inputs would write the same output, an output would replace an input, or
outputs exist already. A :class:`Plan` holds path strings only, never
images.

>>> template = NameTemplate("{stem}-{kernel}{suffix}")
>>> template.render(stem="cat", suffix=".png", name="cat.jpg", kernel="blur", index=1)
'cat-blur.png'
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re
import string
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator, Sequence

from .. import images
from ..errors import os_reason
from .report import Outcome

__all__ = [
    "BatchError",
    "TemplateError",
    "PlanError",
    "PLACEHOLDERS",
    "NameTemplate",
    "Task",
    "Plan",
    "image_extensions",
    "read_path_list",
    "kernel_label",
    "format_suffix",
    "plan_batch",
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
    extensions = images.extensions_of([name])
    if input_suffix and extensions.get(input_suffix.lower()) == name:
        return input_suffix
    if name in _PREFERRED_SUFFIX:
        return _PREFERRED_SUFFIX[name]
    own = sorted(ext for ext, f in extensions.items() if f == name)
    if not own:
        raise BatchError(f"format {name} has no file extension; give --name with a suffix")
    return own[0]


def image_extensions(formats: Sequence[str] = images.DEFAULT_FORMATS) -> frozenset[str]:
    """Lower-case suffixes (``.png``) Pillow registers for the allowed formats."""
    return frozenset(images.extensions_of(formats))


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
            result.failed.append((directory, os_reason(error)))
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
