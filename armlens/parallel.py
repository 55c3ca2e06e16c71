"""Independent work on one loaded CPU model, spread over forked processes of one torch thread each.

Why: on a small model the heavy calls are matrix products of a few dozen rows (a REINFORCE step is 32 one-token
branches), which a second torch thread speeds up little, while a second process runs a second job beside the first:
on 2 cores two one-thread processes did 1.59x the REINFORCE steps and 1.40x the full forwards of one 2-thread
process (``scripts/thread_scaling.py``, ``experiments/bench/threads.json``).
A per-criterion ARM has one independent fit per criterion, so :meth:`armlens.rm.ActivationRM.fit` hands them to
:func:`fork_map`.

How: ``fork`` children inherit the loaded model copy-on-write (no reload, no pickling of the model); each child
sets one torch thread before any work (a child of a process that has used OpenMP threads hangs when it opens
OpenMP threads of its own) and sends back its pickled result. Results do not depend on the number of processes:
every job must be a pure function of its arguments and the model (seeded from its own arguments, never from a
shared stream). Only on Linux, on CPU models, outside daemonic processes (a multiprocessing pool worker cannot
have children), Jupyter kernels (their ZeroMQ sockets do not survive a fork) and Ray runtimes; elsewhere
:func:`default_processes` is 1 and work runs in this process. A child that dies raises ``BrokenProcessPool`` in the
caller.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from armlens.errors import BadInputError
from armlens.typing import Model

_TASK: tuple[Callable[..., Any], Sequence[tuple[Any, ...]]] | None = None
"""The function and jobs of the running :func:`fork_map`, inherited by its forked children."""


def _fork_unsafe_runtime() -> str | None:
    """What in this process would not survive a fork: a Jupyter kernel's ZeroMQ sockets (a forked child broke the
    kernel's message loop: "Socket operation on non-socket") or a Ray runtime's gRPC channels."""
    kernel = sys.modules.get("ipykernel.kernelapp")
    if kernel is not None and kernel.IPKernelApp.initialized():
        return "a Jupyter kernel"
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        return "a Ray runtime"
    return None


def can_fork(model: Model | None = None) -> bool:
    """Whether work on ``model`` may be forked: Linux, CPU parameters, not inside a daemonic process, a Jupyter
    kernel or a Ray runtime."""
    if sys.platform != "linux" or mp.current_process().daemon or _fork_unsafe_runtime():
        return False
    if model is None:
        return True
    return all(p.device.type == "cpu" for p in model.parameters())


def default_processes(model: Model | None, n_jobs: int) -> int:
    """Processes for ``n_jobs`` independent jobs: one per torch thread this process may use (``torch.get_num_threads``:
    a run limited to one thread stays serial), at most one per job, 1 where forking is not possible."""
    if n_jobs < 2 or not can_fork(model):
        return 1
    return min(n_jobs, torch.get_num_threads())


def check_processes(model: Model | None, processes: int | None, n_jobs: int) -> int:
    """``processes`` as given (``None``: :func:`default_processes`), capped at ``n_jobs``; a clear error for a value
    below 1 or for several processes where forking is not possible."""
    if processes is None:
        return default_processes(model, n_jobs)
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise BadInputError(f"processes must be a whole number >= 1 (got {processes!r})")
    processes = min(processes, max(1, n_jobs))
    if processes > 1 and not can_fork(model):
        where = _fork_unsafe_runtime()
        raise BadInputError("processes > 1 forks the loaded model, which needs Linux, a model on the CPU and a "
                            "non-daemonic process" + (f", and this process runs {where}" if where else "")
                            + "; use processes=1 here")
    return processes


def _run(i: int) -> Any:
    assert _TASK is not None
    fn, jobs = _TASK
    return fn(*jobs[i])


def _one_thread() -> None:
    torch.set_num_threads(1)


def fork_map(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], processes: int) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in ``processes`` forked children of one torch thread each (in order; an
    exception in a child is raised here). ``processes <= 1`` runs in this process, with its threads."""
    if processes <= 1 or len(jobs) < 2:
        return [fn(*job) for job in jobs]
    global _TASK
    if _TASK is not None:
        raise RuntimeError("fork_map does not nest")
    _TASK = (fn, jobs)
    try:  # a child that dies (killed, out of memory) raises BrokenProcessPool here instead of hanging the map
        with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=mp.get_context("fork"),
                                 initializer=_one_thread) as pool:
            return list(pool.map(_run, range(len(jobs))))
    finally:
        _TASK = None
