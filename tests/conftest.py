"""Shared fixtures: tiny random models (unit tier) and the embedded default model (``slow`` tier)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real preference data: the copy bundled inside the package (armlens.data.bundle), which every checkout
    has, or the folder ``ARMLENS_DATA_ROOT`` names (it must exist: a typo fails, it does not skip)."""
    from armlens.data.bundle import bundled_root

    env = os.environ.get("ARMLENS_DATA_ROOT")
    root = Path(env) if env else bundled_root()
    assert root.is_dir(), f"ARMLENS_DATA_ROOT={env} is not a folder"
    return root


@pytest.fixture(scope="session")
def tiny():
    """Multi-head tiny Llama: 2 layers x 4 heads x 16 d_head."""
    from armlens.testing import tiny_model

    return tiny_model(n_layers=2, n_heads=4, d_head=16, seed=0)


@pytest.fixture(scope="session")
def tiny_gqa():
    """Grouped-query tiny Llama: 3 layers x 4 query heads, 2 key/value heads."""
    from armlens.testing import tiny_model

    return tiny_model(n_layers=3, n_heads=4, n_key_value_heads=2, d_head=16, seed=1)


@pytest.fixture(scope="session")
def saved_tiny_model(tmp_path_factory):
    """A factory: a tiny random Llama saved as a Hugging Face folder (model and tokenizer), for commands and worker
    processes that load a model by name. One folder per distinct set of arguments, built once per session."""
    from armlens.testing import tiny_hf_model

    folders: dict[tuple, Path] = {}

    def make(n_layers: int = 2, n_heads: int = 4, d_head: int = 16, seed: int = 3,
             n_key_value_heads: int | None = None) -> Path:
        key = (n_layers, n_heads, d_head, seed, n_key_value_heads)
        if key not in folders:
            folder = tmp_path_factory.mktemp("tiny-model")
            kv = {} if n_key_value_heads is None else {"n_key_value_heads": n_key_value_heads}
            hf, tok = tiny_hf_model(n_layers=n_layers, n_heads=n_heads, d_head=d_head, seed=seed, **kv)
            hf.save_pretrained(folder)
            tok.save_pretrained(folder)
            folders[key] = folder
        return folders[key]

    return make


@pytest.fixture(scope="session", params=["mha", "gqa"])
def tiny_any(request, tiny, tiny_gqa):
    return tiny if request.param == "mha" else tiny_gqa


@pytest.fixture(scope="session")
def default_model():
    """The embedded SmolLM2-135M-Instruct (loads in ~1 s once its de-quantised copy is cached)."""
    from armlens.model import load_model

    return load_model()


@pytest.fixture(scope="session")
def cli_commands() -> list[list[str]]:
    """Every ``armlens`` command as its words (``["fit"]``, ``["data", "stats"]``), and each group (``["data"]``)."""
    from armlens.cli import COMMANDS, GROUPS

    return [[g] for g in GROUPS] + [name.split() for name in COMMANDS]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and a busy 2-core machine makes two threads far slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


TEST_DEVICE = os.environ.get("ARMLENS_TEST_DEVICE", "cpu")
"""Where the device tests (``tests/test_device.py``) run: ``cpu`` by default; ``scripts/gpu_check.sh`` sets ``cuda``."""
TEST_DTYPE = os.environ.get("ARMLENS_TEST_DTYPE", "float32")
"""Their weights' dtype: ``float32`` (default) or ``bfloat16`` / ``float16`` on a GPU."""
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 1e-2}
"""Largest |difference| allowed between P(Yes) (or a loss divided by its scale) computed two ways on the device
model, or on the device model and the float32 CPU reference: float32 differs from the CPU only by summation order;
bfloat16 keeps 8 bits of mantissa (relative rounding 2**-8 per operation, compounded over the layers)."""


@pytest.fixture(scope="session")
def device_setting():
    """``(device, torch dtype, tolerance)`` of the device tests; skips when the device is not visible."""
    if TEST_DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"ARMLENS_TEST_DEVICE={TEST_DEVICE} but no CUDA device is visible")
    if TEST_DTYPE not in TOLERANCE:
        raise ValueError(f"ARMLENS_TEST_DTYPE must be one of {sorted(TOLERANCE)}, not {TEST_DTYPE!r}")
    return TEST_DEVICE, getattr(torch, TEST_DTYPE), TOLERANCE[TEST_DTYPE]

