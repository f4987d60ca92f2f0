"""convfilter: image convolution, byte-identical to Pillow where Pillow does the same job.

The library behind the ``convfilter`` command::

    import convfilter as cf

    cf.filter_array(array, "gaussian:2", border="reflect")   # any real NumPy dtype
    cf.filter_image(Image.open("photo.jpg"), "edge_enhance")  # what `convfilter apply` writes
    image.filter(cf.Filter("sobel-x", abs=True))               # inside Pillow's own API
    cf.filter_file("in.jpg", "out.png", cf.FilterSettings("sharpen"))

Names load on first use, so importing the package (and ``convfilter --help``)
does not import NumPy or Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_EXPORTS = {
    "filter_array": "engine",
    "correlate": "engine",
    "FilterError": "engine",
    "filter_image": "pipeline",
    "filter_file": "pipeline",
    "Filter": "pipeline",
    "FileResult": "pipeline",
    "Kernel": "kernels",
    "KernelSpecError": "kernels",
    "parse_kernel": "kernels",
    "PRESETS": "kernels",
    "NeighbourhoodFilter": "neighbourhood",
    "FilterSettings": "options",
    "OutputSettings": "options",
    "BorderMode": "options",
    "Method": "options",
    "AlphaMode": "options",
    "Compression": "options",
    "FillValue": "options",
    "SettingsError": "options",
    "ImageError": "images",
    "OutputError": "images",
    "compare_images": "compare",
    "compare_files": "pipeline",
    "CompareError": "compare",
}

__all__ = [
    "__version__",
    "filter_array",
    "correlate",
    "FilterError",
    "filter_image",
    "filter_file",
    "Filter",
    "FileResult",
    "Kernel",
    "KernelSpecError",
    "parse_kernel",
    "PRESETS",
    "NeighbourhoodFilter",
    "FilterSettings",
    "OutputSettings",
    "BorderMode",
    "Method",
    "AlphaMode",
    "Compression",
    "FillValue",
    "SettingsError",
    "ImageError",
    "OutputError",
    "compare_images",
    "compare_files",
    "CompareError",
]

if TYPE_CHECKING:
    from .compare import CompareError, compare_images
    from .engine import FilterError, correlate, filter_array
    from .images import ImageError, OutputError
    from .kernels import PRESETS, Kernel, KernelSpecError, parse_kernel
    from .neighbourhood import NeighbourhoodFilter
    from .options import (
        AlphaMode,
        BorderMode,
        Compression,
        FillValue,
        FilterSettings,
        Method,
        OutputSettings,
        SettingsError,
    )
    from .pipeline import FileResult, Filter, compare_files, filter_file, filter_image


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convfilter' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
