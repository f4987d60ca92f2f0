"""``python -m convfilter``: the same as the ``convfilter`` command."""

from .cli import run

if __name__ == "__main__":
    run()
