"""Many files at once: :func:`plan_batch` checks everything, then :func:`run_batch` writes.

:mod:`.plan` expands the inputs and names the outputs, :mod:`.run` runs the
tasks (in this process, in worker processes or on Dask), :mod:`.report`
holds each file's :class:`Outcome` and the :class:`BatchSummary`.
"""

from .plan import (
    BatchError,
    NameTemplate,
    PlanError,
    Task,
    TemplateError,
    format_suffix,
    image_extensions,
    kernel_label,
    plan_batch,
    read_path_list,
)
from .report import BatchSummary, Outcome
from .run import default_jobs, is_scheduler_address, require_dask, run_batch

__all__ = [
    "BatchError",
    "TemplateError",
    "PlanError",
    "NameTemplate",
    "Task",
    "Outcome",
    "BatchSummary",
    "image_extensions",
    "read_path_list",
    "kernel_label",
    "format_suffix",
    "plan_batch",
    "run_batch",
    "default_jobs",
    "require_dask",
    "is_scheduler_address",
]
