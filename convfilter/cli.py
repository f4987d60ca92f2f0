"""The ``convfilter`` command: parses options, calls the library, reports.

Nothing here computes. NumPy and Pillow are imported only inside the
commands that need them, so ``--help`` and ``--version`` start quickly.
Every error a user can cause becomes one line, ``convfilter: error: ...``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import sys
from typing import Iterator

import click

from . import __version__
from .errors import error_text
from .options import (
    DEFAULT_FORMATS,
    DEFAULT_MAX_PIXELS,
    AlphaMode,
    BorderMode,
    Compression,
    FilterSettings,
    Method,
    OutputSettings,
    SettingsError,
    parse_size,
)

#: Exit codes (documented in docs/usage.md and docs/batch.md).
EXIT_OK = 0
EXIT_ERROR = 1  # a bad input, or (with --fail-on-diff / diff) images that differ
EXIT_USAGE = 2  # a bad option or argument; also every error of `convfilter diff`
EXIT_INTERRUPTED = 130


#: Fixed help width, so --help reads the same everywhere (and in docs/reference.md).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "terminal_width": 88,
                    "max_content_width": 88}  # fmt: skip


class CommandError(click.ClickException):
    """A user-caused error, shown as one ``convfilter: error:`` line."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:  # noqa: ARG002 - Click's signature
        click.echo(f"convfilter: error: {one_line(self.format_message())}", err=True)


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so a file name holding a
    newline cannot split an error message over two lines.

    >>> one_line("'a\\nb.png': no such file")
    "'a\\\\nb.png': no such file"
    """
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


class ConvfilterGroup(click.Group):
    """A group whose usage errors are one line too, and never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not (sys.argv[1:] if args is None else args):
            # No command at all: the help that --help prints, as a usage error.
            with self.make_context(prog_name or "convfilter", ["--help"], resilient_parsing=True) as ctx:
                click.echo(ctx.get_help(), err=True)
            if standalone_mode:
                sys.exit(EXIT_USAGE)
            return EXIT_USAGE
        try:
            code = super().main(
                args, prog_name or "convfilter", complete_var, standalone_mode=False, **extra
            )
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            if isinstance(exc, click.NoSuchOption) and re.fullmatch(r"-[\d.]+", exc.option_name or ""):
                hint = " (a kernel that starts with '-' goes after '--', e.g. -- \"-1 0 1\")"
            click.echo(f"convfilter: error: {one_line(exc.format_message())}{hint}", err=True)
            code = EXIT_USAGE
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.Abort:
            click.echo("convfilter: error: interrupted", err=True)
            code = EXIT_INTERRUPTED
        code = code if isinstance(code, int) else EXIT_OK
        if standalone_mode:
            sys.exit(code)
        return code


@contextlib.contextmanager
def reported_errors(debug: bool, exit_code: int = EXIT_ERROR) -> Iterator[None]:
    """Turn library errors into one-line messages; ``debug`` lets them through."""
    try:
        yield
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        raise CommandError("interrupted", EXIT_INTERRUPTED) from None
    except (ValueError, OSError) as exc:
        if debug:
            raise
        raise CommandError(error_text(exc), exit_code) from None
    except MemoryError:
        if debug:
            raise
        raise CommandError("out of memory (try a smaller image or --max-pixels)", exit_code) from None
    except Exception as exc:  # a bug: still one line, with the way to see more
        if debug:
            raise
        raise CommandError(f"{error_text(exc)} (rerun with --debug for a traceback)", exit_code) from None


def _echo(text: str, *, to_stderr: bool) -> None:
    click.echo(text, err=to_stderr)


def _kernel_options(function):
    """The options that build kernels, shared by apply, kernels and batch."""
    options = [
        click.option("-k", "--kernel", "kernel_specs", multiple=True, metavar="SPEC",
                     help="Preset, filter (median:3, unsharp, ...), inline matrix or @FILE; repeat to chain."),
        click.option("--scale", type=float, default=None, metavar="S",
                     help="Divide the weights by S (overrides the kernel's scale)."),
        click.option("--offset", type=float, default=None, metavar="O",
                     help="Add O to every result (overrides the kernel's offset)."),
        click.option("--normalize", is_flag=True,
                     help="Divide by the sum of the weights (an error for zero-sum kernels)."),
        click.option("--flip", is_flag=True,
                     help="True convolution: rotate the kernel 180 degrees."),
        click.option("--anchor", metavar="X,Y", default=None, callback=_anchor,
                     help="The kernel's tap on the output pixel: column X, row Y, from 0 at the top left "
                          "[default: the centre, w//2,h//2]."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _anchor(context, parameter, value: str | None) -> tuple[int, int] | None:
    """``--anchor X,Y`` as the kernel's ``(row, column)``."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise click.BadParameter(f"{value!r} is not X,Y: two whole numbers, 0 or more (1,1)")
    column, row = (int(p) for p in parts)
    return row, column


def _filter_options(function):
    """How the filter is applied: repeat, border, abs, bands, alpha, method."""
    options = [
        click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                     help="Apply the whole kernel chain N times."),
        click.option("--border", type=click.Choice(BorderMode.names()), default="nearest",
                     show_default=True, help="How pixels beyond the edge are made up."),
        click.option("--cval", default="0", show_default=True, metavar="V",
                     help="Fill value for --border constant: V, V% of the type's range, or one per "
                          "band (255,0,0)."),
        click.option("--abs", "abs", is_flag=True,
                     help="Absolute value before rounding (edges of both signs)."),
        click.option("--channels", metavar="BANDS", default=None,
                     help="Bands to filter, e.g. R,G; the others pass through."),
        click.option("--alpha", type=click.Choice(AlphaMode.names()), default="auto", show_default=True,
                     help="auto: premultiply transparent images for kernels that keep brightness, "
                          "else keep; or keep alpha, filter it, premultiply."),
        click.option("--method", type=click.Choice(Method.names()), default="auto",
                     show_default=True, help="Engine strategy; auto picks the fastest."),
        click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Engine threads per image [default: one per CPU]."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _output_options(function):
    """How results are written: format, quality, metadata."""
    options = [
        click.option("--format", "fmt", metavar="FORMAT", default=None,
                     help="Output format (PNG, JPEG, TIFF, WEBP, ...) instead of the extension's; "
                          "for batch, {suffix} follows it."),
        click.option("--quality", type=click.IntRange(1, 100), default=None, metavar="Q",
                     help="JPEG/WebP quality, 1-100 [default: the input's encoding; see docs/images.md]."),
        click.option("--lossless", is_flag=True, help="Write lossless WebP."),
        click.option("--compression", type=click.Choice(Compression.names()), default=None,
                     help="TIFF compression [default: the input's, else none]."),
        click.option("--background", metavar="COLOR", default=None,
                     help="Flatten transparency onto COLOR (a name or #rrggbb); needed for JPEG, BMP, PPM."),
        click.option("--depth", type=click.Choice(["8"]), default=None,
                     help="Write 8 bits per sample, scaling 16-bit samples [default: the input's depth]."),
        click.option("--strip-metadata", is_flag=True,
                     help="Write no ICC profile, EXIF or DPI (for publishing)."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _input_options(function):
    options = [
        click.option("--max-pixels", type=click.IntRange(min=0), default=None, metavar="N",
                     help="Refuse images with more pixels (0: no limit) [default: Pillow's 89,478,485]."),
        click.option("--allow-format", "allow_formats", multiple=True, metavar="NAME",
                     help="Also decode this Pillow format (e.g. EPS); repeatable."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


#: The parameters _kernel_options gives a command; the FilterSettings fields _filter_options gives.
_KERNEL_PARAMS = ("kernel_specs", "scale", "offset", "normalize", "flip", "anchor")
_FILTER_PARAMS = ("repeat", "border", "cval", "abs", "channels", "alpha", "method", "threads")


def build_kernels(options: dict, *, quiet: bool = True) -> tuple:
    """Parse and prepare every ``-k`` spec (before any file is read).

    Unless ``quiet``, a kernel that would change the image's brightness
    without being asked to gets a ``convfilter: note:`` line on stderr.
    """
    from .kernels import parse_kernel

    specs = options["kernel_specs"]
    if not specs:
        raise click.UsageError("give at least one kernel with -k/--kernel")
    changes = {name: options.get(name) for name in _KERNEL_PARAMS[1:]}
    kernels = tuple(parse_kernel(spec, **changes) for spec in specs)
    for hint in [] if quiet else brightness_hints(kernels):
        click.echo(f"convfilter: note: {one_line(hint)}", err=True)
    return kernels


def brightness_hints(kernels) -> list[str]:
    """The brightness note of each kernel that has one (see ``kernels.brightness_hint``)."""
    from .kernels import brightness_hint

    return [hint for hint in map(brightness_hint, kernels) if hint]


def filter_settings(kernels, options: dict):
    """The one :class:`FilterSettings` value of a command's filter options."""
    with _as_bad_parameter():
        return FilterSettings(kernels, **{name: options[name] for name in _FILTER_PARAMS})


def output_settings(options: dict):
    """The one :class:`OutputSettings` value of a command's output and input options."""
    from .loading import readable_formats

    allowed = options.get("allow_formats", ())
    unknown = [f for f in allowed if f.upper() not in readable_formats()]
    if unknown:
        raise click.BadParameter(
            f"{unknown[0]!r} is not a format Pillow reads here ({', '.join(readable_formats())})",
            param_hint="--allow-format",
        )
    background = options.get("background")
    depth = options.get("depth")
    with _as_bad_parameter():
        return OutputSettings(
            fmt=options.get("fmt"), quality=options.get("quality"),
            strip_metadata=options.get("strip_metadata", False),
            max_pixels=DEFAULT_MAX_PIXELS if options.get("max_pixels") is None else options["max_pixels"],
            formats=DEFAULT_FORMATS + tuple(allowed), depth=None if depth is None else int(depth),
            lossless=options.get("lossless", False), compression=options.get("compression"),
            background=None if background is None else _colour(background),
        )  # fmt: skip


@contextlib.contextmanager
def _as_bad_parameter() -> Iterator[None]:
    """A SettingsError that names its option becomes Click's usage error for it."""
    try:
        yield
    except SettingsError as exc:
        if exc.option is None:
            raise
        raise click.BadParameter(str(exc), param_hint=exc.option) from None


def _colour(text: str) -> tuple[int, int, int]:
    """An 8-bit RGB colour from a name or #rrggbb, as Pillow reads colours."""
    from PIL import ImageColor

    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a colour; give a name (white) or #rrggbb", param_hint="--background"
        ) from None


@click.group(cls=ConvfilterGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="convfilter")
def main() -> None:
    """Filter images with convolution kernels, byte-identical to Pillow where
    Pillow can do the same job.

    \b
    Example:
      convfilter apply photo.jpg out.png -k edge_enhance --diff-pil
    """
    # Runs before every command (not for --help/--version), before NumPy is
    # imported; speed only, never results. Image buffers are reused instead of
    # mapped afresh for each. The engine runs its own threads over strips:
    # OpenBLAS (NumPy's matrix products, in the separable method) would start
    # as many again per call, and its idle threads spin on the cores that the
    # engine and the decoder need. A user's own setting is kept.
    from .allocator import reuse_freed_memory

    reuse_freed_memory()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@main.command()
@click.argument("input_path", metavar="INPUT")
@click.argument("output_path", metavar="OUTPUT")
@_kernel_options
@_filter_options
@_output_options
@_input_options
@click.option("--diff-pil", "diff_pil", is_flag=False, flag_value="", default=None, metavar="[FILTER]",
              help="Also run Pillow and report the difference; FILTER names a Pillow filter.")
@click.option("--diff-image", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Write a picture: input, convfilter, Pillow, difference (implies --diff-pil).")
@click.option("--fail-on-diff", is_flag=True,
              help="Exit 1 when the result differs from Pillow's (implies --diff-pil).")
@click.option("--stream", is_flag=True,
              help="Filter a TIFF by bands of rows into a tiled BigTIFF, within --memory [default: only a "
                   "TIFF too large for --memory].")
@click.option("--memory", metavar="SIZE", default=None,
              help="Memory budget for a streamed TIFF, e.g. 512M or 2G [default: a quarter of the RAM].")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Filter a TIFF in chunks on a Dask cluster: tcp://HOST:8786, or 'local' with --threads "
                   "workers (needs convfilter[dask]).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of the report.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def apply(input_path, output_path, diff_pil, diff_image, fail_on_diff, stream, memory, scheduler, as_json, quiet,
          debug, **options):
    """Filter INPUT with one or more kernels and write OUTPUT.

    INPUT or OUTPUT may be '-' for standard input/output. The output
    format follows OUTPUT's extension unless --format is given.

    \b
    Examples:
      convfilter apply photo.jpg out.png -k edge_enhance --diff-pil
      convfilter apply photo.jpg edges.png -k sobel-x --abs
      convfilter apply scan.tif soft.tif -k gaussian:2 --border reflect
      convfilter apply in.png out.png -k "0 -1 0; -1 5 -1; 0 -1 0"
      cat in.png | convfilter apply - - -k blur --format png > out.png
      convfilter apply slide.tif out.tif -k gaussian_blur:4 --memory 1G
    """
    with reported_errors(debug):
        output = output_settings(options)
        read_ahead = _read_ahead(input_path, output) if scheduler is None and not stream else None
        kernels = build_kernels(options, quiet=quiet or as_json)
        settings = filter_settings(kernels, options)
        with _as_bad_parameter():
            memory = None if memory is None else parse_size(memory, "--memory")
        if scheduler is not None:
            _check_scheduler(scheduler)
        from .interrupts import CtrlC
        from .pipeline import filter_file

        to_stdout = output_path == "-"
        if to_stdout and sys.stdout.isatty():
            raise CommandError("image data is not written to a terminal; redirect standard output "
                               "(... - > out.png) or give an output file name")  # fmt: skip
        source = _read_stdin() if input_path == "-" else input_path
        destination = sys.stdout.buffer if to_stdout else output_path
        progress = _FilterProgress(sys.stderr) if sys.stderr.isatty() and not quiet else None
        try:
            with CtrlC() as ctrl_c:
                result = filter_file(
                    source, destination, settings, output,
                    diff_pil=diff_pil is not None or diff_image is not None or fail_on_diff,
                    diff_filter=diff_pil or None,
                    diff_image=diff_image,
                    source_name="-" if input_path == "-" else None,
                    progress=ctrl_c.watching(progress),
                    stream=True if stream else None,
                    memory=memory,
                    scheduler=scheduler,
                    read_ahead=read_ahead,
                )  # fmt: skip
        finally:
            if progress is not None:
                progress.close()
    differs = result.diff is not None and not result.diff.identical
    if as_json:
        summary = {
            "command": "apply",
            "kernels": [_kernel_summary(k) for k in kernels],
            "settings": {"repeat": settings.repeat, "border": settings.border,
                         "cval": _cval_summary(options["cval"]), "abs": settings.abs,
                         "channels": settings.channels, "alpha": settings.alpha, "method": settings.method},
            **result.to_dict(),
        }  # fmt: skip
        summary["notes"] = brightness_hints(kernels) + summary["notes"]
        _echo(_json(summary), to_stderr=to_stdout)
    elif not quiet:
        _echo(_apply_report(result, settings), to_stderr=to_stdout)
    if differs and fail_on_diff:
        click.get_current_context().exit(EXIT_ERROR)


def _read_ahead(input_path: str, output):
    """Start decoding INPUT while the rest of the command imports (the
    engine needs NumPy, which takes some 0.1 s to import); None for standard
    input, and for a TIFF, which may be too large to hold and be streamed."""
    if input_path == "-" or input_path.lower().endswith((".tif", ".tiff")):
        return None
    from .loading import ReadAhead

    return ReadAhead(input_path, max_pixels=output.max_pixels, formats=output.formats)


def _json(data) -> str:
    """``json.dumps``, imported when a command prints JSON (``--help`` never does)."""
    import json

    return json.dumps(data)


def _check_scheduler(address: str, require_dask=None) -> None:
    """A malformed --scheduler is a usage error; missing Dask a plain one."""
    from .cluster import is_scheduler_address

    if not is_scheduler_address(address):
        raise click.BadParameter(f"{address!r} is not 'local' or tcp://HOST:PORT", param_hint="--scheduler")
    if require_dask is None:
        from .cluster import require_dask
    require_dask()
    # The command reports failures itself, in one line. Cancelled Dask requests end as
    # asyncio tasks whose errors nobody reads, which asyncio would print after that line,
    # and distributed logs the connections of workers stopped by Ctrl-C as they close.
    import logging

    for name in ("asyncio", "distributed"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class _FilterProgress:
    """A one-line percentage on a terminal, once filtering has run for two seconds."""

    DELAY = 2.0

    def __init__(self, stream) -> None:
        import time

        self._clock = time.monotonic
        self.stream = stream
        self.started = self._clock()
        self.drawn_at = 0.0
        self.best = 0.0
        self.shown = False

    def __call__(self, fraction: float) -> None:
        self.best = max(self.best, min(1.0, fraction))
        now = self._clock()
        if now - self.started >= self.DELAY and now - self.drawn_at >= 0.1:
            self.drawn_at = now
            self.shown = True
            self.stream.write(f"\rconvfilter: filtering {100 * self.best:3.0f}% ({now - self.started:.0f} s)")
            self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 48 + "\r")
            self.stream.flush()


#: The most standard input `apply -` reads (an endless stream must not exhaust memory).
STDIN_LIMIT = 1 << 30


def _read_stdin() -> io.BytesIO:
    data = sys.stdin.buffer.read(STDIN_LIMIT + 1)
    if len(data) > STDIN_LIMIT:
        raise CommandError(
            f"standard input holds more than {STDIN_LIMIT >> 20} MiB; save the image to a file "
            "and give its name"
        )
    return io.BytesIO(data)


def _cval_summary(text: str) -> float | str:
    """``--cval`` for the JSON summary: a number when it is one, else as given."""
    try:
        return float(text)
    except ValueError:
        return text


def _kernel_summary(kernel) -> dict:
    if hasattr(kernel, "matrix_kernel"):  # a filter that is not one matrix
        pillow = kernel.pillow_label if kernel.pillow_filter() is not None else None
        return {"name": kernel.name, "shape": list(kernel.shape), "linear": kernel.linear, "pillow": pillow}
    return {
        "name": kernel.name,
        "shape": list(kernel.shape),
        "scale": kernel.scale,
        "offset": kernel.offset,
        "pillow": kernel.pillow_name,
        "linear": True,
    }


def _apply_report(result, settings) -> str:
    width, height = result.size
    frames = f", {result.frames} frames" if result.frames > 1 else ""
    lines = [
        f"{result.input} -> {result.output}: {settings.describe()}, border {settings.border}; "
        f"{result.mode} {width}x{height}{frames}, {result.timings_ms['total']:.0f} ms"
    ]
    lines += [f"  note: {note}" for note in result.notes]
    if result.diff is not None:
        lines.append(f"  compared with {result.reference}:")
        lines += ["    " + line for line in _diff_table(result.diff).splitlines()]
    return "\n".join(lines)


def _diff_table(report) -> str:
    """The metrics as a small two-column table (whole image, interior)."""
    columns = [("whole image", report.whole)]
    if report.interior is not None and any(report.margin):
        columns.append(("interior", report.interior))

    def fmt(metrics, key):
        if key == "identical":
            return "yes" if metrics.identical else "no"
        if key == "differing":
            return f"{metrics.differing:,} of {metrics.samples:,}"
        if key == "psnr":
            if math.isinf(metrics.psnr):
                return "inf" if metrics.psnr > 0 else "-inf"
            return f"{metrics.psnr:.2f} dB"
        value = getattr(metrics, key)
        return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:.4g}"

    rows = [("identical", "identical"), ("samples differing", "differing"),
            ("max |diff|", "max_abs"), ("mean |diff|", "mean_abs"), ("RMSE", "rmse"),
            ("PSNR", "psnr")]  # fmt: skip
    cells = [["", *[title for title, _ in columns]]]
    cells += [[label, *[fmt(m, key) for _, m in columns]] for label, key in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


@main.command()
@click.argument("spec", required=False)
@click.option("--scale", type=float, default=None, metavar="S", help="Override the kernel's scale.")
@click.option("--offset", type=float, default=None, metavar="O", help="Override the kernel's offset.")
@click.option("--normalize", is_flag=True, help="Divide by the sum of the weights.")
@click.option("--flip", is_flag=True, help="Rotate 180 degrees (true convolution).")
@click.option("--anchor", metavar="X,Y", default=None, callback=_anchor,
              help="The tap on the output pixel: column X, row Y.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def kernels(spec, scale, offset, normalize, flip, anchor, as_json, debug):
    """List the presets and filters, or print the matrix SPEC applies.

    Without SPEC: every preset and filter with its size, scale, offset,
    Pillow equivalent, whether it is linear, and what it does. With SPEC (a
    preset, inline matrix, @FILE or filter): the effective weights (matrix /
    scale, after --flip), exactly as they are applied, by cross-correlation;
    a filter that is not linear (median:3) has no matrix, and says so.

    \b
    Examples:
      convfilter kernels
      convfilter kernels emboss
      convfilter kernels "1 2 1" --normalize
      convfilter kernels median:5
    """
    with reported_errors(debug):
        if spec is None:
            _echo(_preset_listing(as_json), to_stderr=False)
            return
        (kernel,) = build_kernels(dict(kernel_specs=(spec,), scale=scale, offset=offset, normalize=normalize,
                                       flip=flip, anchor=anchor), quiet=False)  # fmt: skip
    matrix_kernel = kernel.matrix_kernel() if hasattr(kernel, "matrix_kernel") else kernel
    if as_json:
        data = _kernel_summary(kernel)
        if matrix_kernel is not None:
            data.update(anchor=list(matrix_kernel.anchor), weights=matrix_kernel.weights.tolist(),
                        matrix=matrix_kernel.matrix.tolist())  # fmt: skip
        _echo(_json(data), to_stderr=False)
        return
    h, w = kernel.shape
    if matrix_kernel is not kernel:
        pillow = f", Pillow {kernel.pillow_label}" if kernel.pillow_filter() is not None else ""
        lines = [f"{kernel.name}: {'linear' if kernel.linear else 'non-linear'} filter, {h}x{w} window{pillow}",
                 f"  {kernel.description}"]  # fmt: skip
        if matrix_kernel is None:
            lines.append("no matrix: it is not a weighted sum, so --scale, --offset, --normalize, --flip and "
                         "--anchor do not apply")  # fmt: skip
            _echo("\n".join(lines), to_stderr=False)
            return
        lines.append("computed in Pillow's passes, rounding after each; the weights of its matrix (any "
                     "kernel option applies to this matrix instead):")  # fmt: skip
        kernel = matrix_kernel
    else:
        lines = [
            f"{kernel.name}: {h}x{w} (rows x columns), anchor row {kernel.anchor[0]} column "
            f"{kernel.anchor[1]}, scale {kernel.scale:g}, offset {kernel.offset:g}"
            + (f", Pillow {kernel.pillow_name}" if kernel.pillow_name else ""),
            "weights (matrix / scale), applied as written (cross-correlation):",
        ]
    cells = [[f"{v:.6g}" for v in row] for row in kernel.weights]
    width = max(len(c) for row in cells for c in row)
    lines += ["  " + " ".join(c.rjust(width) for c in row) for row in cells]
    _echo("\n".join(lines), to_stderr=False)


def _preset_listing(as_json: bool) -> str:
    from .kernels import PARAMETRIC_PRESETS, PRESETS
    from .neighbourhood import FILTER_SPECS

    rows = []
    for preset in PRESETS.values():
        h, w = len(preset.grid), len(preset.grid[0])
        rows.append({"name": preset.name, "size": f"{h}x{w}", "scale": preset.scale,
                     "offset": preset.offset, "pillow": preset.pillow_name, "linear": True,
                     "description": preset.description})  # fmt: skip
    for usage, description in PARAMETRIC_PRESETS.values():
        rows.append({"name": usage, "size": "NxN", "scale": None, "offset": 0,
                     "pillow": None, "linear": True, "description": description})  # fmt: skip
    for spec in FILTER_SPECS.values():
        rows.append({"name": spec.usage, "size": "NxN" if spec.parameters[1] else "3x3", "scale": None,
                     "offset": None, "pillow": spec.pillow, "linear": spec.linear,
                     "description": spec.description})  # fmt: skip
    if as_json:
        return _json(rows)
    header = ["name", "size", "scale", "offset", "linear", "pillow", "description"]
    table = [header] + [
        [r["name"], r["size"], "-" if r["offset"] is None else "sum" if r["scale"] is None else f"{r['scale']:g}",
         "-" if r["offset"] is None else f"{r['offset']:g}", "yes" if r["linear"] else "no", r["pillow"] or "-",
         r["description"]]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in table
    )


@main.command()
@click.argument("first", metavar="A")
@click.argument("second", metavar="B")
@click.option("--diff-image", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Write a picture: A, B and their difference.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code tells.")
@_input_options
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def diff(first, second, diff_image, as_json, quiet, max_pixels, allow_formats, debug):
    """Compare two images pixel by pixel.

    Exit code 0 when identical, 1 when they differ, 2 on error (like cmp).

    \b
    Example:
      convfilter diff ours.png pillow.png --diff-image diff.png
    """
    with reported_errors(debug, exit_code=EXIT_USAGE):
        from .pipeline import compare_files

        output = output_settings({"max_pixels": max_pixels, "allow_formats": allow_formats})
        report = compare_files(first, second, output, diff_image=diff_image)
    if as_json:
        _echo(_json({"command": "diff", "a": first, "b": second, **report.to_dict()}),
              to_stderr=False)  # fmt: skip
    elif not quiet:
        verdict = "identical" if report.identical else "differ"
        _echo(f"{first} and {second}: {verdict}\n" + _diff_table(report), to_stderr=False)
    click.get_current_context().exit(EXIT_OK if report.identical else EXIT_ERROR)


# --- batch ------------------------------------------------------------------------------

#: Exit code after SIGTERM (128 + 15, as a shell reports a process killed by it).
EXIT_TERMINATED = 143


@main.command()
@click.argument("inputs", nargs=-1, metavar="INPUTS...")
@click.option("-d", "--output-dir", "out_dir", required=True, metavar="OUT_DIR",
              type=click.Path(file_okay=False), help="Write the outputs here (created if missing).")
@_kernel_options
@_filter_options
@_output_options
@_input_options
@click.option("-r", "--recursive", is_flag=True,
              help="Walk sub-folders of directories and recreate them under OUT_DIR.")
@click.option("--from-file", "from_file", metavar="LIST", default=None,
              type=click.Path(dir_okay=False, allow_dash=True),
              help="Also read input paths from LIST, one a line ('-': standard input).")
@click.option("-0", "--null", is_flag=True, help="Paths in LIST are NUL-separated (find -print0).")
@click.option("--name", "name_template", metavar="TEMPLATE", default="{stem}{suffix}",
              show_default=True,
              help="Output name: {stem} {suffix} {name} {kernel} {index}; '/' makes folders.")
@click.option("--in-place", is_flag=True, help="Allow an output to replace its own input.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist already.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that exist already; skip their inputs.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Files at a time [default: one per CPU].")
@click.option("--fail-fast", is_flag=True, help="Stop at the first file that fails.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar on stderr [default: when stderr is a terminal].")
@click.option("--dry-run", is_flag=True,
              help="Print each input and the output it would write (or why not); write nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON line per file and a summary line.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print nothing but the error lines of files that fail.")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run on a Dask cluster: tcp://HOST:8786, or 'local' (needs convfilter[dask]).")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def batch(inputs, out_dir, recursive, from_file, null, name_template, in_place, overwrite, skip_existing,
          jobs, fail_fast, progress, dry_run, as_json, quiet, scheduler, debug, **options):
    """Filter many images into OUT_DIR, in parallel.

    INPUTS are image files, directories (their images; sub-folders with -r)
    and glob patterns, quoted so that convfilter expands them ('**' too).
    Nothing is written unless every output name is free: two inputs that
    would write one output, an output that would replace an input, or
    outputs that exist already stop the batch before it starts.

    \b
    Examples:
      convfilter batch photos/ -d out/ -k sharpen
      convfilter batch 'shots/**/*.jpg' -r -d web/ -k gaussian:1 --format webp
      convfilter batch in/ -d out/ -k sobel-x --abs --name '{stem}-{kernel}{suffix}'
      find . -name '*.png' -print0 | convfilter batch --from-file - -0 -d out/ -k blur
      convfilter batch photos/ -d out/ -k blur --scheduler tcp://10.0.0.5:8786
    """
    import time

    started = time.perf_counter()
    if not inputs and from_file is None:
        raise click.UsageError("give at least one input (file, directory or pattern) or --from-file")
    if overwrite and skip_existing:
        raise click.UsageError("give either --overwrite or --skip-existing, not both")
    with reported_errors(debug):
        kernels = build_kernels(options, quiet=quiet)
        settings = filter_settings(kernels, options)
        output = output_settings(options)
        from . import batch as batching

        try:
            batching.NameTemplate(name_template).check_format(output.fmt)
        except batching.TemplateError as exc:
            raise click.UsageError(str(exc)) from None
        if scheduler is not None:
            _check_scheduler(scheduler, batching.require_dask)
        with _path_list(from_file) as stream:
            paths = batching.read_path_list(stream, null=null) if stream is not None else ()
            plan = batching.plan_batch(
                inputs, out_dir, path_list=paths, recursive=recursive, template=name_template,
                kernel_specs=options["kernel_specs"], fmt=output.fmt, formats=output.formats, in_place=in_place,
                overwrite=overwrite, skip_existing=skip_existing,
            )  # fmt: skip
        if dry_run:
            _echo(_dry_run_listing(plan, as_json=as_json), to_stderr=False)
            return
        show_progress = (sys.stderr.isatty() if progress is None else progress) and not quiet
        report = _BatchReport(len(plan.tasks) + len(plan.failed), as_json=as_json and not quiet,
                              progress=show_progress)  # fmt: skip
        try:
            summary = batching.run_batch(
                plan, settings, output, jobs=jobs or batching.default_jobs(),
                fail_fast=fail_fast, scheduler=scheduler, on_outcome=report, started=started,
            )  # fmt: skip
        finally:
            report.close()
    if not quiet:
        _echo(_json(summary.to_dict()) if as_json else summary.to_text(), to_stderr=False)
    if summary.interrupted == "SIGINT":
        code = EXIT_INTERRUPTED
    elif summary.interrupted == "SIGTERM":
        code = EXIT_TERMINATED
    else:
        code = EXIT_ERROR if summary.failed else EXIT_OK
    click.get_current_context().exit(code)


def _dry_run_listing(plan, *, as_json: bool) -> str:
    """What ``batch --dry-run`` prints: each input with its output, or why it has none."""
    rows = [("planned", t.index, t.input, t.output, None) for t in plan.tasks]
    rows += [(o.status, o.index, o.input, o.output, o.error or o.reason) for o in plan.skipped + plan.failed]
    rows.sort(key=lambda row: (row[1] is None, row[1] or 0, row[2]))
    if as_json:
        return "\n".join(_json({"type": "plan", "status": status, "index": index, "input": source,
                                     "output": output, "reason": reason})
                         for status, index, source, output, reason in rows)  # fmt: skip
    lines = []
    for status, _, source, output, reason in rows:
        if status == "planned":
            lines.append(f"{source} -> {output}")
        else:
            lines.append(f"{source}: {'not processed' if status == 'failed' else 'skipped'} ({reason})")
    lines.append(f"{len(plan.tasks)} to process, {len(plan.skipped)} skipped, {len(plan.failed)} refused; "
                 "nothing written (--dry-run)")  # fmt: skip
    return "\n".join(one_line(line) for line in lines)


@contextlib.contextmanager
def _path_list(path: str | None):
    """The --from-file LIST as a binary stream (standard input for '-'), or None."""
    if path is None:
        yield None
    elif path == "-":
        yield sys.stdin.buffer
    else:
        try:
            stream = open(path, "rb")
        except OSError as exc:
            raise CommandError(f"cannot read --from-file list: {error_text(exc)}") from None
        with stream:
            yield stream


class _BatchReport:
    """Each file as it finishes: a JSON line on stdout; an error line and a progress
    bar on stderr."""

    def __init__(self, total: int, *, as_json: bool, progress: bool) -> None:
        import shutil
        import time

        self._clock = time.monotonic
        self.total = total
        self.as_json = as_json
        self.progress = progress
        self.done = 0
        self.failed = 0
        self.started = self._clock()
        self.drawn_at = 0.0
        self.width = max(40, min(100, shutil.get_terminal_size((80, 24)).columns - 1))
        self.stderr = sys.stderr

    def __call__(self, outcome) -> None:
        if self.as_json:
            _echo(_json(outcome.to_dict()), to_stderr=False)
        if outcome.status == "skipped":
            return
        self.done += 1
        if outcome.status == "failed":
            self.failed += 1
            if self.progress:
                self._clear()
                self.drawn_at = 0.0
            self.stderr.write(one_line(f"convfilter: error: {outcome.input}: {outcome.error}") + "\n")
            self.stderr.flush()
        if self.progress and (self.done == self.total or self._clock() - self.drawn_at >= 0.1):
            self._draw()

    def _draw(self) -> None:
        self.drawn_at = self._clock()
        elapsed = self.drawn_at - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        failed = f" {self.failed} failed" if self.failed else ""
        text = (f" {self.done}/{self.total} {100 * self.done // max(1, self.total):3d}%"
                f" {rate:.1f} img/s ETA {int(left) // 60}:{int(left) % 60:02d}{failed}")  # fmt: skip
        room = max(10, self.width - len(text) - 2)
        filled = room * self.done // max(1, self.total)
        self.stderr.write("\r[" + "#" * filled + "." * (room - filled) + "]" + text)
        self.stderr.flush()

    def _clear(self) -> None:
        self.stderr.write("\r" + " " * self.width + "\r")

    def close(self) -> None:
        if self.progress:
            self._clear()
            self.stderr.flush()


# --- gallery ----------------------------------------------------------------------------


@main.command()
@click.argument("image_path", metavar="IMAGE")
@click.option("-o", "--output", "sheet_path", required=True, metavar="SHEET",
              help="Write the contact sheet here (format from its extension).")
@click.option("-k", "--kernel", "kernel_specs", multiple=True, metavar="SPEC",
              help="A kernel or filter to show; repeat [default: every preset, then box:5, gaussian:2, "
                   "gaussian_blur:2, unsharp:2,150,3, median:5, mode:5, sobel]; a bare 'box', 'median', ... "
                   "gets that parameter.")
@click.option("--tile-size", type=click.IntRange(16, 4096), default=256, show_default=True, metavar="N",
              help="Largest side of each tile, in pixels.")
@click.option("--columns", type=click.IntRange(min=1), default=None, metavar="N",
              help="Tiles per row [default: about square].")
@_filter_options
@_input_options
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def gallery(image_path, sheet_path, kernel_specs, tile_size, columns, quiet, debug, **options):
    """Write a contact sheet of IMAGE through many kernels, to choose one.

    The original comes first, then one tile per kernel, each labelled with
    its spec. Every kernel filters the full-size image; tiles are then
    scaled down to --tile-size.

    \b
    Examples:
      convfilter gallery photo.jpg -o sheet.png
      convfilter gallery photo.jpg -o edges.png -k sobel-x -k sobel-y -k laplacian --abs
    """
    with reported_errors(debug):
        from . import gallery as galleries

        specs = galleries.gallery_specs(kernel_specs)
        entries = [(spec, filter_settings(build_kernels({"kernel_specs": (spec,)}), options)) for spec in specs]
        output = output_settings(options)
        sheet = galleries.write_gallery(image_path, sheet_path, entries, tile_size=tile_size,
                                        columns=columns, output=output)  # fmt: skip
    if not quiet:
        width, height = sheet.image.size
        _echo(f"{image_path} -> {sheet_path}: {len(sheet.tiles)} tiles "
              f"(original and {len(entries)} kernel{'s' if len(entries) != 1 else ''}), {width}x{height}",
              to_stderr=False)  # fmt: skip


def run() -> None:
    """The ``convfilter`` program's work (``convfilter.__main__`` loads this
    module and calls it): :func:`main`, then the process ends at once.

    By the time :func:`main` returns, every output is in place and every
    report written; what Python does next (a last garbage collection, then
    freeing every module) only keeps the shell waiting, 30 to 40 ms of a
    0.45 s ``apply`` here. So once the output streams are flushed the
    process ends there, unless something may still have work to do at
    exit: a thread other than daemons, or a module that arranges exit work
    of its own (:data:`_EXIT_WORK`).
    """
    try:
        main(prog_name="convfilter")
        code = 0
    except SystemExit as stop:
        code = stop.code
    if isinstance(code, (int, type(None))) and _nothing_left_at_exit():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed pipe: the ordinary exit reports it
            sys.exit(code)
        os._exit(code or 0)
    sys.exit(code)


#: Modules whose exit work the ordinary exit runs: multiprocessing ends and
#: reaps a batch's worker processes, Dask stops the cluster it started.
_EXIT_WORK = ("multiprocessing", "distributed", "dask")


def _nothing_left_at_exit() -> bool:
    """Whether ending the process now loses nothing (see :func:`run`)."""
    if any(name in sys.modules for name in _EXIT_WORK):
        return False
    import threading

    main_thread = threading.main_thread()
    return all(thread is main_thread or thread.daemon or not thread.is_alive() for thread in threading.enumerate())
