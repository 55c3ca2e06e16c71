"""Evaluation jobs across processes and machines, on Ray Core (``armlens eval --workers N``).

An evaluation is already a list of independent, resumable jobs (:func:`armlens.evaluation.jobs.plan_jobs`: the
branch-pass units of a dataset scored together over shared prefixes, and every other unit on its own). Here each of
``workers`` Ray actors loads the model once and takes the next job from the queue as soon as it is free; the driver
keeps the results folder (its lock, every file write and the summary), so a run on N workers writes exactly the units,
keys and summary a run in one process writes, and an interrupted run resumes either way. Why Ray and not a home-made
scheduler or accelerate's launcher: ``docs/scaling.md`` ("Evaluation across processes and machines").

Ray is an optional dependency: ``pip install "armlens[distributed]"``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from armlens.evaluation.eval_config import EvalConfig
from armlens.evaluation.jobs import Job, check_jobs, compute_job, load_config_model

logger = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2
"""Object store of a local cluster: jobs carry pairs and results carry scores, megabytes at most."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError('workers > 1 runs on Ray, which is not installed: pip install "armlens[distributed]" '
                          "(or ray>=2.40), or run with --workers 1") from None
    return ray


class EvalWorker:
    """One worker process: the model, loaded once, and the jobs it is given (a Ray actor in :func:`run_jobs`)."""

    def __init__(self, config: EvalConfig):
        self.model = load_config_model(config)
        self.cuts: dict[tuple[str, int, int | None], dict[str, Any]] = {}  # compute_job's, kept across jobs

    def check(self, jobs: list[Job]) -> None:
        check_jobs(self.model, jobs)

    def run(self, job: Job, n_bootstrap: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        import socket

        done = compute_job(self.model, job, n_bootstrap, cuts=self.cuts)
        for result, _ in done:
            result["worker"] = {"host": socket.gethostname(), "pid": os.getpid()}
        return done


def _get(ray: Any, refs: Any) -> Any:
    """``ray.get`` that raises a worker's own exception (a ``ValueError`` stays a ``ValueError``)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        raise e.as_instanceof_cause() from None


def run_jobs(config: EvalConfig, jobs: list[Job]) -> Iterator[tuple[Job, list[Any]]]:
    """Run ``jobs`` on ``config.workers`` Ray actors; yields ``(job, per-unit (result, items))`` as jobs finish.

    Joins ``config.ray_address`` when given (or the cluster this process is already connected to), else starts a
    local cluster of ``workers`` CPUs and shuts it down at the end. Every prompt is checked against the model's
    context before any job starts, as in one process.
    """
    ray = _ray()
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report (machines may have no network)
        local = config.ray_address is None
        ray.init(address=config.ray_address, num_cpus=config.workers if local else None,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES if local else None, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING)
        started = True
    try:
        actor = ray.remote(num_cpus=1, num_gpus=config.worker_gpus)(EvalWorker)
        workers = [actor.remote(config) for _ in range(config.workers)]
        logger.info("eval on %d Ray worker(s)", len(workers))
        _get(ray, [w.check.remote(jobs[i::len(workers)]) for i, w in enumerate(workers)])
        queue, idle, running = list(jobs), list(workers), {}
        while queue or running:
            while queue and idle:
                w, job = idle.pop(), queue.pop(0)
                running[w.run.remote(job, config.n_bootstrap)] = (job, w, time.perf_counter())
                # the workers' own log lines stay in their processes (log_to_driver=False): the driver says it
                logger.info("job started (%d left in the queue): %s", len(queue), job.describe())
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job, w, t0 = running.pop(ref)
            idle.append(w)
            done = _get(ray, ref)
            logger.info("job done in %.0f s: %s", time.perf_counter() - t0, job.describe())
            yield job, done
    finally:
        if started:
            ray.shutdown()
