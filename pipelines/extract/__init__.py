"""Validated incremental extraction: shop tables -> staged batch -> GX validation -> warehouse or quarantine."""

from pipelines.extract.batch import Interval, extract
from pipelines.extract.publish import publish
from pipelines.extract.run import run_interval, task_extract, task_publish, task_validate
from pipelines.extract.suites import build_suites
from pipelines.extract.validate import BatchRejected, validate

__all__ = [
    "BatchRejected",
    "Interval",
    "build_suites",
    "extract",
    "publish",
    "run_interval",
    "task_extract",
    "task_publish",
    "task_validate",
    "validate",
]
