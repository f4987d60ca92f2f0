"""``python -m convfilter``: the same as the ``convfilter`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="convfilter")
