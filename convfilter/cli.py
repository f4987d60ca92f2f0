"""Command-line interface (placeholder until the apply command lands)."""

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="convfilter")
def main() -> None:
    """Filter images with convolution kernels."""
