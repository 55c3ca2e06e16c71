"""Forked maps over independent jobs (armlens.parallel): order, errors, a dying child, the thread budget."""

from __future__ import annotations

import os
import sys
from concurrent.futures.process import BrokenProcessPool

import pytest
import torch

from armlens.parallel import check_processes, fork_map

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forked maps run on Linux only")


def _square_in_child(x: int) -> tuple[int, int, int]:
    return x * x, os.getpid(), torch.get_num_threads()


def test_fork_map_keeps_order_and_runs_one_thread_children():
    out = fork_map(_square_in_child, [(i,) for i in range(5)], processes=2)
    assert [r[0] for r in out] == [i * i for i in range(5)]
    assert os.getpid() not in {r[1] for r in out} and {r[2] for r in out} == {1}
    serial = fork_map(_square_in_child, [(3,)], processes=2)  # one job: no fork
    assert serial[0][1] == os.getpid()


def _fail(x: int) -> int:
    if x == 2:
        raise KeyError(f"job {x} failed")
    return x


def _die(x: int) -> int:
    if x == 1:
        os._exit(3)
    return x


def test_fork_map_raises_a_childs_error_and_a_dead_child():
    with pytest.raises(KeyError, match="job 2 failed"):
        fork_map(_fail, [(i,) for i in range(4)], processes=2)
    with pytest.raises(BrokenProcessPool):
        fork_map(_die, [(i,) for i in range(3)], processes=2)
    assert fork_map(_fail, [(0,), (1,)], processes=2) == [0, 1]  # usable again afterwards


def test_check_processes_refuses_bad_values():
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="processes must be a whole number"):
            check_processes(None, bad, 4)
    assert check_processes(None, 1, 4) == 1 and check_processes(None, 5, 2) == 2


def test_no_fork_inside_a_jupyter_kernel_or_ray(monkeypatch):
    import types

    from armlens.parallel import can_fork, default_processes

    assert can_fork()
    kernelapp = types.ModuleType("ipykernel.kernelapp")
    kernelapp.IPKernelApp = types.SimpleNamespace(initialized=lambda: True)
    monkeypatch.setitem(sys.modules, "ipykernel.kernelapp", kernelapp)
    assert not can_fork() and default_processes(None, 4) == 1  # a notebook's fit stays in its kernel
    with pytest.raises(ValueError, match="runs a Jupyter kernel"):
        check_processes(None, 2, 4)
    kernelapp.IPKernelApp = types.SimpleNamespace(initialized=lambda: False)  # imported, no kernel running
    assert can_fork()
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: True))
    assert not can_fork()
