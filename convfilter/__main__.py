"""The ``convfilter`` program, and ``python -m convfilter``.

Loads the command only once running, so that Ctrl-C while Click and the
command definitions load (the first ~0.1 s) is one line and exit 130, as
it is everywhere else, rather than Python's traceback.
"""

import sys


def main() -> None:
    """Load the command and run it (:func:`convfilter.cli.run`)."""
    try:
        from .cli import run
    except KeyboardInterrupt:
        sys.stderr.write("convfilter: error: interrupted\n")
        sys.exit(130)  # cli.EXIT_INTERRUPTED, which is not loaded yet
    run()


if __name__ == "__main__":
    main()
