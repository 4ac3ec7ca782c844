"""``encrypt-batch``: many assets, keys fetched once per asset by the coordinator, encryption
on local worker processes or a Dask cluster, resumable through a completion manifest per
output. See :mod:`.runner` (the coordinator), :mod:`.worker` (the task), :mod:`.complete`
(the manifest), :mod:`.executors` and :mod:`.jobs` (the jobs file)."""

from __future__ import annotations

from .complete import MARKER, output_state
from .runner import AssetReport, BatchExecutor, BatchJob, BatchReport, job_fingerprint, run_batch

__all__ = ["MARKER", "AssetReport", "BatchExecutor", "BatchJob", "BatchReport",
           "job_fingerprint", "output_state", "run_batch"]
