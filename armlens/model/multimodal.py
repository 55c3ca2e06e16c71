"""Images in judge prompts: vision-language models through the same token-level fast path as text models.

Context
-------
A vision-language model (LLaVA-OneVision, Idefics3, ...) expands each image placeholder of the prompt into a run of
image tokens, and its forward scatters the image features (vision tower + projector) into the input embeddings at
those positions before the language backbone runs. armlens patches ``hook_z`` of that backbone at the last token,
after the image tokens, exactly as on a text model.

How images travel
-----------------
Everything in armlens is keyed by token ids (left padding, prefix caches, the common leading part two prompts share,
the prefix pool's text keys), so images are given token ids of their own:

- :class:`ImageText` is a rendered prompt (a ``str``) that carries its images; equality and hashing include them.
- :func:`encode_images` runs the processor on the text and images (the model's own placeholder expansion), and
  replaces the image-token positions with *image slot ids*, ids past the vocabulary that name one feature row of
  one image set in the model's :class:`ImageStore`. The same images in another prompt get the same ids, other
  images other ids, so comparing token ids compares images too.
- :func:`image_hooks` turns slot ids back into the image token id for the forward and overwrites the embedding at
  those positions (``hook_embed``) with the stored features: what the model's own ``masked_scatter`` does.

The features of an image set are what the model itself scatters: they are read off a forward of the model on just
the image placeholders and the images, stopped when the language backbone is called (its ``inputs_embeds`` at the
image positions). Tests check the result against the model's own forward with ``pixel_values``.

Models whose positions depend on the image grid (Qwen2-VL's mRoPE) are not supported by this path.
"""

from __future__ import annotations

import bisect
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from armlens.errors import BadInputError, NotFoundError, SetupError
from armlens.model.loading import model_id
from armlens.typing import Model

ImageLike = Any
"""A path (``str`` / ``Path``), a ``PIL.Image.Image``, or raw encoded bytes."""


def load_image(image: ImageLike) -> Any:
    """An RGB ``PIL.Image`` from a path, raw bytes, a ``{"bytes": ...}``/``{"path": ...}`` record or an image."""
    from PIL import Image

    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise NotFoundError(f"image not found: {path}")
        image = Image.open(path)
    if not hasattr(image, "convert"):
        raise TypeError(f"not an image, an image path or image bytes: {type(image).__name__}")
    return image.convert("RGB")


_DIGESTS: dict[str, str] = {}


def image_digest(image: ImageLike) -> str:
    """A content hash of an image (paths: of the file's bytes, cached by path and modification time)."""
    if isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        key = f"{path.resolve()}:{path.stat().st_mtime_ns}"
        if key not in _DIGESTS:
            _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
        return _DIGESTS[key]
    if isinstance(image, (bytes, bytearray)):
        return hashlib.sha256(image).hexdigest()[:24]
    img = load_image(image)
    h = hashlib.sha256(f"{img.mode}{img.size}".encode())
    h.update(img.tobytes())
    return h.hexdigest()[:24]


class ImageText(str):
    """A rendered prompt that carries the images its placeholders stand for (in order).

    It is the prompt's text everywhere a string is expected; equality and hashing also compare the images, so caches
    keyed by prompt text never mix up two prompts that differ only in their images. ``+`` with a string keeps them.
    """

    images: tuple[ImageLike, ...]
    digests: tuple[str, ...]

    def __new__(cls, text: str, images: Sequence[ImageLike] = (), digests: Sequence[str] | None = None) -> ImageText:
        obj = super().__new__(cls, text)
        obj.images = tuple(images)
        obj.digests = tuple(digests) if digests is not None else tuple(image_digest(i) for i in obj.images)
        return obj

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return NotImplemented
        return str.__eq__(self, other) and getattr(other, "digests", ()) == self.digests

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((str(self), self.digests)) if self.digests else str.__hash__(self)

    def __add__(self, other: str) -> ImageText:
        if isinstance(other, ImageText) and other.images:
            raise BadInputError("cannot join two prompts that both carry images")
        return ImageText(str(self) + str(other), self.images, self.digests)

    def __radd__(self, other: str) -> ImageText:
        return ImageText(str(other) + str(self), self.images, self.digests)

    def __reduce__(self) -> Any:
        return (ImageText, (str(self), self.images, self.digests))

    def __repr__(self) -> str:
        return f"ImageText({str.__repr__(self)}, {len(self.images)} image(s))"


def images_of(text: str) -> tuple[ImageLike, ...]:
    return getattr(text, "images", ())


def processor(model: Model) -> Any:
    """The processor of a vision-language model (``None`` for text models)."""
    return getattr(model, "armlens_processor", None)


def is_multimodal(model: Model) -> bool:
    return processor(model) is not None


def require_processor(model: Model) -> Any:
    proc = processor(model)
    if proc is None:
        raise BadInputError(f"{model_id(model)} is a text model: it cannot read images (load a vision-language model, "
                            "or leave the images out)")
    return proc


def image_token_id(model: Model) -> int:
    proc = require_processor(model)
    tid = getattr(proc, "image_token_id", None)
    if tid is None:
        tid = model.tokenizer.convert_tokens_to_ids(proc.image_token)
    return int(tid)


def render_chat(model: Model, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> ImageText:
    """Chat messages whose content may hold ``{"type": "image", "image": x}`` parts, rendered with the processor's
    chat template; the images come along in the order of their placeholders."""
    proc = require_processor(model)
    images: list[ImageLike] = []
    clean = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for part in content:
            if part.get("type") == "image":
                images.append(part["image"])
                parts.append({"type": "image"})
            else:
                parts.append(part)
        clean.append({"role": m["role"], "content": parts})
    text = proc.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt)
    return ImageText(text, images)


# ---------------------------------------------------------------------------------------------------- image store


class _Stop(Exception):
    pass


class ImageStore:
    """The image features of a vision-language model, by image set, each owning a range of slot ids.

    Slot ids start at ``base`` (past every token id); features stay on the model's device (a few MB per image on a
    7B model). ``max_mb`` bounds them: the least recently used are dropped and recomputed from their images when a
    prompt needs them again.
    """

    def __init__(self, model: Model, max_mb: float = 2048.0):
        self.model = model
        self.base = max(int(model.cfg.d_vocab), len(model.tokenizer))
        self.max_bytes = int(max_mb * 2**20)
        self._offsets: list[int] = []  # sorted starts of the ranges
        self._keys: list[tuple[str, ...]] = []
        self._entries: dict[tuple[str, ...], dict[str, Any]] = {}
        self._used: list[tuple[str, ...]] = []  # LRU order of entries holding features
        self.size = 0
        self.bytes = 0

    def slots(self, digests: tuple[str, ...], images: Sequence[ImageLike]) -> Tensor:
        """The slot ids of this image set (its features computed on first use)."""
        entry = self._entries.get(digests)
        if entry is None:
            feats = self._compute(images)
            entry = {"start": self.base + self.size, "n": feats.shape[0], "images": tuple(images), "features": None}
            self._entries[digests] = entry
            self._offsets.append(entry["start"])
            self._keys.append(digests)
            self.size += feats.shape[0]
            self._keep(digests, feats)
        return torch.arange(entry["start"], entry["start"] + entry["n"])

    def features(self, ids: Tensor) -> Tensor:
        """Feature rows ``[len(ids), d_model]`` for slot ids (in their order)."""
        flat = ids.reshape(-1).tolist()
        rows = []
        for i in flat:
            k = bisect.bisect_right(self._offsets, i) - 1
            if k < 0 or i >= self._offsets[k] + self._entries[self._keys[k]]["n"]:
                raise BadInputError(f"token id {i} is neither a vocabulary id nor an image slot of this model")
            key = self._keys[k]
            entry = self._entries[key]
            if entry["features"] is None:
                self._keep(key, self._compute(entry["images"]))
            rows.append(entry["features"][i - entry["start"]])
        return torch.stack(rows)

    def _keep(self, key: tuple[str, ...], feats: Tensor) -> None:
        entry = self._entries[key]
        entry["features"] = feats
        self.bytes += feats.numel() * feats.element_size()
        if key in self._used:
            self._used.remove(key)
        self._used.append(key)
        while self.bytes > self.max_bytes and len(self._used) > 1:
            old = self._entries[self._used.pop(0)]
            self.bytes -= old["features"].numel() * old["features"].element_size()
            old["features"] = None

    def _compute(self, images: Sequence[ImageLike]) -> Tensor:
        """What the model scatters into its input embeddings for these images: a forward on the bare placeholders,
        stopped where the language backbone is called."""
        model, proc = self.model, require_processor(self.model)
        text = proc.image_token * len(images)
        enc = proc(text=[text], images=[[load_image(i) for i in images]], return_tensors="pt",
                   add_special_tokens=False)
        ids = enc["input_ids"]
        hf = model.original_model
        seen: dict[str, Tensor] = {}

        def grab(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            seen["embeds"] = kwargs["inputs_embeds"].detach()
            raise _Stop

        handle = hf.get_decoder().register_forward_pre_hook(grab, with_kwargs=True)
        dtype = next(hf.parameters()).dtype
        inputs = {k: (v.to(model.cfg.device, dtype) if v.is_floating_point() else v.to(model.cfg.device))
                  for k, v in enc.items() if isinstance(v, Tensor)}
        try:
            with torch.inference_mode():
                hf(**inputs)
        except _Stop:
            pass
        finally:
            handle.remove()
        if "embeds" not in seen:
            raise SetupError("the vision-language model never called its language backbone with inputs_embeds")
        where = ids[0] == image_token_id(model)
        return seen["embeds"][0][where.to(seen["embeds"].device)].clone()


def store(model: Model) -> ImageStore:
    """The model's image store (made on first use)."""
    s = getattr(model, "armlens_images", None)
    if s is None:
        s = ImageStore(model)
        model.armlens_images = s
    return s


def encode_images(model: Model, text: ImageText) -> list[int]:
    """Token ids of a prompt with images: the processor's expansion, each image-token position an image slot id."""
    proc = require_processor(model)
    images = [load_image(i) for i in text.images]
    enc = proc(text=[str(text)], images=[images], add_special_tokens=False)
    ids = torch.tensor(list(enc["input_ids"][0]))
    where = ids == image_token_id(model)
    slots = store(model).slots(text.digests, text.images)
    if int(where.sum()) != slots.numel():
        raise BadInputError(f"the prompt expands its {len(images)} image(s) into {int(where.sum())} image tokens, but "
                            f"the images alone give {slots.numel()} feature rows; does the text hold one placeholder "
                            f"{proc.image_token!r} per image?")
    ids[where] = slots
    return ids.tolist()


def image_hooks(model: Model, tokens: Tensor) -> tuple[Tensor, list[tuple[str, Any]]]:
    """Token ids to hand the model (image slots back to the image token) and the hook that writes the images'
    features into the embeddings at those positions (none when ``tokens`` holds no image slot)."""
    s = getattr(model, "armlens_images", None)
    if s is None:
        return tokens, []
    where = tokens >= s.base
    if not bool(where.any()):
        return tokens, []
    rows = s.features(tokens[where].cpu())
    plain = torch.where(where, torch.full_like(tokens, image_token_id(model)), tokens)

    def inject(embeds: Tensor, hook: Any) -> Tensor:
        out = embeds.clone()
        out[where.to(out.device)] = rows.to(out.device, out.dtype)
        return out

    return plain, [("hook_embed", inject)]
