"""A worker process for the routing concurrency test: the real jobs, minus the periodic sweep, so a drain the
engine failed to trigger is not quietly made up for by the sweep."""

from __future__ import annotations

from arq.worker import run_worker

from service.settings import load_settings
from workers.settings import worker_settings

if __name__ == "__main__":
    options = worker_settings(load_settings())
    options["cron_jobs"] = []
    run_worker(options)  # type: ignore[arg-type]
