"""Exceptions as the one line of text a user reads.

Every module that turns an exception into words (the command's error line,
a failed file of a batch, a file that cannot be opened) says it the same
way, through these functions. Imports nothing but the standard library.
"""

from __future__ import annotations

import errno

__all__ = ["first_line", "os_reason", "error_text"]

#: Short, lower-case reasons for the operating-system errors users meet most.
_REASONS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a directory",
    errno.ENOSPC: "no space left on device",
}


def first_line(exc: BaseException) -> str:
    """The first line of the exception's text, or its type's name when it has none.

    >>> first_line(ValueError("bad header\\nmore detail"))
    'bad header'
    >>> first_line(KeyError())
    'KeyError'
    """
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def os_reason(exc: OSError) -> str:
    """Why an operating-system call failed, without the file name.

    >>> os_reason(FileNotFoundError(2, "No such file or directory", "a.png"))
    'no such file'
    >>> os_reason(OSError(5, "Input/output error"))
    'Input/output error'
    """
    return _REASONS.get(exc.errno) or exc.strerror or first_line(exc)


def error_text(exc: BaseException) -> str:
    """One line for any exception: a ValueError's own message (the library's
    errors all are ValueErrors), ``'FILE': reason`` for an operating-system
    error, and ``internal error: Type: text`` for anything else, which is a bug.

    >>> error_text(PermissionError(13, "Permission denied", "out.png"))
    "'out.png': permission denied"
    >>> error_text(ZeroDivisionError("division by zero"))
    'internal error: ZeroDivisionError: division by zero'
    """
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError):
        where = f"'{exc.filename}': " if exc.filename else ""
        return where + os_reason(exc)
    if isinstance(exc, ValueError):
        return str(exc) or type(exc).__name__
    return f"internal error: {type(exc).__name__}: {first_line(exc)}"
