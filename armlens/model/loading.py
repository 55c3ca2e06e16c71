"""Loading a causal LM as a TransformerLens ``TransformerBridge``, and the name it was loaded under.

:func:`load_model` turns a name into weights (:mod:`armlens.model.sources`) and boots them as a bridge
(:func:`boot`, also used for the tiny test models): left padding, eval mode, the model id recorded on the bridge.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from armlens.errors import BadInputError
from armlens.model.sources import DEFAULT_MODEL, is_vlm_source, load_hf, load_vlm_hf
from armlens.typing import Model


def _torchvision_importable() -> bool:
    """Whether torchvision can be imported (checked, never installed)."""
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


@contextlib.contextmanager
def no_package_installs() -> Iterator[None]:
    """TransformerLens 4.3 runs ``pip install torchvision`` (unpinned) when a multimodal model's AutoProcessor fails
    to load while booting, and on a CPU machine that replaces the CPU torch build with a CUDA one in the middle of a
    run. armlens loads its own processor (:mod:`armlens.model.multimodal`), so inside this block that hook only checks
    whether torchvision is there (``tests/test_multimodal.py`` checks that booting never calls pip)."""
    try:
        from transformer_lens.model_bridge.sources.transformers import helpers
    except ImportError:  # another TransformerLens layout: nothing to guard
        yield
        return
    if not hasattr(helpers, "_ensure_torchvision"):
        yield
        return
    real = helpers._ensure_torchvision
    helpers._ensure_torchvision = _torchvision_importable
    try:
        yield
    finally:
        helpers._ensure_torchvision = real


def boot(hf_model: Any, tokenizer: Any, folder: str, model_id: str, device: str | None) -> Model:
    from transformer_lens.model_bridge import TransformerBridge

    if device is not None and not getattr(hf_model, "hf_device_map", None):
        # TransformerLens 4.3 records ``device`` in cfg.device but leaves a pre-loaded model where it is, so without
        # this a "cuda" bridge ran CPU weights on cuda inputs (tests/test_device.py; a device map places itself)
        hf_model = hf_model.to(device)
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the bridge must never reach for the Hub once weights are in memory
    try:
        with no_package_installs():
            bridge = TransformerBridge.boot_transformers(folder, hf_model=hf_model, tokenizer=tokenizer,
                                                         device=device)
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    bridge.tokenizer.padding_side = "left"
    bridge.eval()
    bridge.armlens_model_id = model_id
    return bridge


def load_model(
    name: str | None = None,
    *,
    device: str | None = None,
    dtype: torch.dtype | str = torch.float32,
    use_cache: bool = True,
    device_map: str | dict[str, str | int] | None = None,
    offload_folder: str | None = None,
) -> Model:
    """Load a causal LM as a TransformerLens ``TransformerBridge``.

    Args:
        name: ``None`` (or ``"smollm2-135m-instruct"``) for the embedded default; a local Hugging Face folder; a local
            ``.gguf`` file; or a Hub id ``"org/name"`` (needs network access). A vision-language model (a config
            with ``vision_config``: LLaVA-OneVision, Idefics3, ...) is loaded with its processor
            (``model.armlens_processor``), so judge prompts can carry images.
        device: ``"cpu"`` (default when no GPU), ``"cuda"``, ...; ``None`` lets the bridge choose.
        dtype: parameter dtype (``torch.float32`` default; ``"bfloat16"`` on GPUs halves memory).
        use_cache: keep / reuse a de-quantised copy of GGUF models in :func:`cache_dir`.
        device_map: a Hugging Face device map (``"auto"``, ``"balanced"``, or ``{module: device}``; needs
            ``accelerate``) that spreads the layers over several GPUs, the CPU and disk; instead of ``device``. Each
            layer's key/value cache then lives on its layer's device; the fast path is unchanged (tested with a
            CPU + disk-offload map on a tiny model). Text models only.
        offload_folder: where layers mapped to ``"disk"`` are written.
    """
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise BadInputError(f"unknown dtype {dtype!r} (try float32, bfloat16, float16)")
        dtype = getattr(torch, dtype)
    name = name or DEFAULT_MODEL
    processor = None
    placement: dict[str, object] = {}
    if device_map is not None:
        if device is not None:
            raise BadInputError("pass either device or device_map, not both")
        placement = {"device_map": device_map, **({"offload_folder": offload_folder} if offload_folder else {})}
    if name != DEFAULT_MODEL and is_vlm_source(name):
        if placement:
            raise BadInputError("device_map is not supported for vision-language models yet")  # a vision-language model: its processor comes along
        hf, tok, folder, processor = load_vlm_hf(name, dtype)
    else:
        hf, tok, folder = load_hf(name, dtype, use_cache, placement)
    if device is None and not placement:  # with a device map the bridge reads the placement off the model
        device = "cuda" if torch.cuda.is_available() else "cpu"
    bridge = boot(hf, tok, folder, name, device)
    if processor is not None:
        bridge.armlens_processor = processor
    return bridge


def model_id(model: Model) -> str:
    return getattr(model, "armlens_model_id", None) or getattr(model.cfg, "model_name", "unknown")


def check_device(device: str | None, option: str = "--device", *, visible: bool = True) -> None:
    """Refuse, before anything loads, a ``device`` torch does not know (``tpu``), or (``visible``) a CUDA device
    this process cannot see. ``None`` (the automatic choice) passes."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise BadInputError(f"{option} {device!r} is not a device; give cpu, cuda, cuda:N or mps") from None
    if visible and dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= n:
            raise BadInputError(f"{option} {device}: this process sees {n} CUDA device(s)")


def parse_device_map(text: str | None) -> str | dict[str, Any] | None:
    """A device map given as text (``--device-map``): a strategy name, or a JSON object mapping modules to devices."""
    import json

    if text is None or not text.strip().startswith("{"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"--device-map is not a valid JSON object ({e.msg}); give auto, balanced, sequential "
                            'or {"module": device, ...}') from None
    return value
