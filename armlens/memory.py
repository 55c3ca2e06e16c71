"""``armlens info --memory``: what a fit needs in memory (and how much work it is), computed from the model's shape.

Context
-------
A default ``ActivationRM.fit`` holds four things at its peak: the weights; one criterion's :class:`PrefixPool`
(each training prompt's key/value cache, kept for the whole REINFORCE run); the working set of one branch forward
(a copy of one prompt's cache widened by the K branch positions, and K rows of logits); and the runtime itself
(Python, torch, transformers and TransformerLens; on a GPU also the CUDA context). Everything here is arithmetic
on a :class:`ModelShape` (read from a Hugging Face config, a loaded model, or a named preset such as
``qwen2-7b``) and an :class:`~armlens.rm.ARMConfig`; no weights are needed, so a 7B model can be planned on a
laptop. The one measured constant is :data:`RUNTIME_MB` (see its note); ``armlens bench``'s default-fit row is what
the prediction is checked against (``docs/scaling.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from armlens.errors import BadInputError

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "float64": 8}

RUNTIME_MB = 540.0
"""Resident memory of a process that has imported torch (the CPU build, 2.13.0+cpu), transformers, TransformerLens
and armlens and run one short forward, less its weights: 1,053 MiB measured with the default model loaded, minus its
513 MiB of weights (``docs/scaling.md``; 223 MiB of it is imports, the rest appears at the first forward). A CUDA
process adds its context (about 0.5 to 1 GB of device memory, not measured here)."""

LOGIT_COPIES = 3
"""Float32 copies of a full forward's logits alive at once in the bridge: measured, one forward of 1,200 tokens on
the default model raised the peak 622 MiB above the warm process, 2.6 times its 236 MiB of logits."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes a memory plan needs (Llama/Qwen2-style decoder: gated MLP, RMSNorm, rotary positions)."""

    name: str
    n_layers: int
    n_heads: int
    """Query heads per layer (hook_z's heads)."""
    n_key_value_heads: int
    """Key/value heads per layer: what a key/value cache stores (fewer than n_heads with grouped-query attention)."""
    d_head: int
    d_model: int
    d_mlp: int
    d_vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False
    """Qwen2 has biases on q, k and v."""
    n_params: int | None = None
    """Exact parameter count when known (a loaded model); otherwise :meth:`param_count` computes it."""

    def param_count(self) -> int:
        """Parameters: the exact count when known, else embeddings + blocks (attention, gated MLP, two norms) + the
        final norm + the unembedding (unless tied)."""
        if self.n_params is not None:
            return self.n_params
        q, kv = self.n_heads * self.d_head, self.n_key_value_heads * self.d_head
        attn = self.d_model * q + 2 * self.d_model * kv + q * self.d_model
        if self.qkv_bias:
            attn += q + 2 * kv
        block = attn + 3 * self.d_model * self.d_mlp + 2 * self.d_model
        embed = self.d_vocab * self.d_model
        return embed * (1 if self.tied_embeddings else 2) + self.n_layers * block + self.d_model

    @classmethod
    def from_hf_config(cls, config: Any, name: str | None = None) -> ModelShape:
        """From a ``transformers`` config (a vision-language config's ``text_config`` is used)."""
        c = getattr(config, "text_config", None) or config
        n_heads = c.num_attention_heads
        d_head = getattr(c, "head_dim", None) or c.hidden_size // n_heads
        return cls(name=name or getattr(config, "name_or_path", "") or getattr(c, "model_type", "model"),
                   n_layers=c.num_hidden_layers, n_heads=n_heads,
                   n_key_value_heads=getattr(c, "num_key_value_heads", None) or n_heads, d_head=d_head,
                   d_model=c.hidden_size, d_mlp=c.intermediate_size, d_vocab=c.vocab_size,
                   tied_embeddings=bool(getattr(config, "tie_word_embeddings", getattr(c, "tie_word_embeddings",
                                                                                       False))),
                   qkv_bias=bool(getattr(c, "attention_bias", False) or getattr(c, "model_type", "") == "qwen2"))

    @classmethod
    def from_model(cls, model: Any) -> ModelShape:
        """From a loaded bridge: its Hugging Face config, with the exact (deduplicated) parameter count."""
        from armlens.model import model_id

        hf = model.original_model
        shape = cls.from_hf_config(hf.config, model_id(model))
        seen = {id(p): p.numel() for p in hf.parameters()}
        return cls(**{**asdict(shape), "n_params": sum(seen.values())})


SHAPES = {
    "smollm2-135m-instruct": ModelShape("smollm2-135m-instruct", 30, 9, 3, 64, 576, 1536, 49152,
                                        tied_embeddings=True),
    "qwen2-7b": ModelShape("qwen2-7b", 28, 28, 4, 128, 3584, 18944, 152064, qkv_bias=True),
    "qwen2.5-7b": ModelShape("qwen2.5-7b", 28, 28, 4, 128, 3584, 18944, 152064, qkv_bias=True),
    "llama-3.1-8b": ModelShape("llama-3.1-8b", 32, 32, 8, 128, 4096, 14336, 128256),
}
"""Shapes from the models' published configs, for planning without weights (``armlens info --memory --shape``).
``qwen2-7b`` is the paper's setting: 28 layers x 28 heads, 4 key/value heads, d_head 128."""


def dtype_bytes(dtype: Any) -> int:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise BadInputError(f"unknown dtype {dtype!r} (try float32, bfloat16, float16)")
    return DTYPE_BYTES[name]


def kv_bytes_per_token(shape: ModelShape, dtype: Any = "float32") -> int:
    """One token's key/value cache: keys and values (2) x layers x key/value heads x d_head x bytes."""
    return 2 * shape.n_layers * shape.n_key_value_heads * shape.d_head * dtype_bytes(dtype)


@dataclass
class MemoryPlan:
    """Bytes of each part of a fit's peak; :attr:`peak_bytes` is their sum. ``notes`` say what each assumes."""

    model: str
    dtype: str
    params: int
    weights_bytes: int
    kv_bytes_per_token: int
    prompt_tokens: int
    pool_prompts: int
    pool_bytes: int
    """One criterion's prefix pool: pool_prompts x prompt_tokens x kv_bytes_per_token, at most the pool's cap."""
    pool_cap_bytes: int
    branch_bytes: int
    """One branch forward: a copy of a prompt's cache widened by K positions, K rows of logits (float32, twice), the
    widest per-layer activation of K positions and the K x (prompt + K) attention scores of one layer."""
    forward_bytes: int
    """One full forward of an extraction prompt (batch_size rows): :data:`LOGIT_COPIES` float32 copies of its logits
    over every position (the bridge computes them all) and one layer's attention scores and MLP activations."""
    runtime_bytes: int
    k_branches: int
    notes: dict[str, str] = field(default_factory=dict)
    processes: int = 1
    """Criteria fitted side by side in forked processes (``ActivationRM.fit(processes=...)``): each holds its own
    pool and working set; the weights and runtime are shared copy-on-write."""

    @property
    def working_bytes(self) -> int:
        """The larger of the two transient working sets (they never overlap: extraction precedes REINFORCE)."""
        return max(self.branch_bytes, self.forward_bytes)

    @property
    def peak_bytes(self) -> int:
        return self.runtime_bytes + self.weights_bytes + self.processes * (self.pool_bytes + self.working_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "working_bytes": self.working_bytes, "peak_bytes": self.peak_bytes}


def memory_plan(
    shape: ModelShape,
    arm: Any = None,
    *,
    dtype: Any = "float32",
    prompt_tokens: int = 300,
    pool_prompts: int | None = None,
    extraction_tokens: int | None = None,
    runtime_mb: float | int = RUNTIME_MB,
    processes: int = 1,
) -> MemoryPlan:
    """The memory a default fit of ``arm`` (an :class:`~armlens.rm.ARMConfig`; its defaults when ``None``) needs
    on a model of ``shape`` loaded in ``dtype``, for judge prompts of about ``prompt_tokens`` tokens.

    ``pool_prompts``: distinct prompts in one criterion's pool (its REINFORCE training and validation prompts);
    default ``arm.n_train + 2 * arm.val_pairs``, the most a criterion holds. The pool is freed between criteria.
    ``extraction_tokens``: length of an ``icl`` extraction prompt, run as a full forward (default 3 x
    ``prompt_tokens``: demonstrations and a query; 517 measured against 168-token judge prompts on HHH).
    ``processes``: criteria fitted at once in forked processes (a CPU fit of several criteria uses one per torch
    thread, at most one per criterion, unless ``processes=1`` is passed): pool and working set count once each.
    """
    if arm is None:
        from armlens.rm import ARMConfig

        arm = ARMConfig()
    if prompt_tokens < 2:
        raise BadInputError("prompt_tokens must be at least 2")
    if processes < 1:
        raise BadInputError("processes must be at least 1")
    b = dtype_bytes(dtype)
    per_token = kv_bytes_per_token(shape, dtype)
    params = shape.param_count()
    n_pool = arm.n_train + 2 * arm.val_pairs if pool_prompts is None else pool_prompts
    cap = int(arm.reinforce.prefix_cache_mb * 2**20)
    pool = min(cap, n_pool * (prompt_tokens - 1) * per_token)
    k = min(arm.reinforce.k_masks, arm.reinforce.mask_chunk)
    t = prompt_tokens
    widest = max(4 * shape.d_model, 3 * shape.d_mlp)  # residual stream copies / gate, up and their product
    branch = ((t - 1 + k) * per_token + 2 * k * shape.d_vocab * 4 + k * widest * b
              + shape.n_heads * k * (t - 1 + k) * 4)
    rows = max(1, arm.batch_size)
    e = 3 * t if extraction_tokens is None else extraction_tokens
    forward = rows * (LOGIT_COPIES * e * shape.d_vocab * 4 + e * widest * b + shape.n_heads * e * e * 4)
    notes = {
        "weights": f"{params / 1e6:.1f} M parameters x {b} bytes",
        "pool": f"{n_pool} prompts x {t - 1} prefix tokens x {per_token / 1024:.1f} KiB "
                f"(cap {arm.reinforce.prefix_cache_mb:.0f} MiB)",
        "branches": f"K = {k} positions over a {t}-token prompt: cache copy, logits, one layer's activations",
        "forward": f"{rows} x {e}-token extraction forward: {LOGIT_COPIES} copies of every position's logits, "
                   "one layer's activations",
        "runtime": f"{runtime_mb:.0f} MiB measured on CPU (Python, torch, transformers, TransformerLens)",
    }
    return MemoryPlan(model=shape.name, dtype=str(dtype).removeprefix("torch."), params=params,
                      weights_bytes=params * b, kv_bytes_per_token=per_token, prompt_tokens=t, pool_prompts=n_pool,
                      pool_bytes=pool, pool_cap_bytes=cap, branch_bytes=branch, forward_bytes=forward,
                      runtime_bytes=int(runtime_mb * 2**20), k_branches=k, notes=notes, processes=processes)


@dataclass
class FitWork:
    """How much computing a fit is (tokens through the model), for time estimates from a measured rate."""

    prefix_tokens: int
    """Tokens run as prefixes or full forwards: extraction prompts and each pool prompt once."""
    branch_forwards: int
    """Forwards of K branch positions over a cached prefix: REINFORCE steps, validation and the final choice."""
    branch_positions: int
    flops: float
    """About 2 x parameters per token processed (attention over the prefix ignored: small at these lengths)."""


def fit_work(shape: ModelShape, arm: Any = None, *, prompt_tokens: int = 300, extraction_tokens: int | None = None,
             pool_prompts: int | None = None, criteria: int = 1) -> FitWork:
    """Tokens and forwards of a fit with ``criteria`` criteria (each its own extraction, pool and REINFORCE run).

    ``extraction_tokens``: length of one ``icl`` extraction prompt (default 3 x ``prompt_tokens``: demonstrations
    plus a query)."""
    if arm is None:
        from armlens.rm import ARMConfig

        arm = ARMConfig()
    r = arm.reinforce
    n_pool = arm.n_train + 2 * arm.val_pairs if pool_prompts is None else pool_prompts
    ext = 3 * prompt_tokens if extraction_tokens is None else extraction_tokens
    prefix = criteria * (arm.n_trials * ext + n_pool * prompt_tokens)
    chunks = -(-r.k_masks // r.mask_chunk)
    final = r.n_final_samples * min(r.n_final_eval, n_pool)
    val = (r.steps // r.val_every if r.val_every else 0) * 2 * arm.val_pairs
    forwards = criteria * (r.steps * chunks + final + val)
    positions = criteria * (r.steps * r.k_masks + final + val)
    return FitWork(prefix_tokens=prefix, branch_forwards=forwards, branch_positions=positions,
                   flops=2.0 * shape.param_count() * (prefix + positions))


def format_plan(plan: MemoryPlan) -> str:
    def mb(n: int) -> str:
        return f"{n / 2**20:,.0f} MiB" if n < 10 * 2**30 else f"{n / 2**30:,.1f} GiB"

    rows = [
        ("weights", plan.weights_bytes, plan.notes["weights"]),
        ("prefix pool", plan.pool_bytes, plan.notes["pool"]),
        (f"{plan.k_branches} branches", plan.branch_bytes, plan.notes["branches"]),
        ("full forward", plan.forward_bytes, plan.notes["forward"]),
        ("runtime", plan.runtime_bytes, plan.notes["runtime"]),
    ]
    lines = [f"memory plan for a default fit: {plan.model} in {plan.dtype}, ~{plan.prompt_tokens}-token prompts",
             f"key/value cache per token: {plan.kv_bytes_per_token / 1024:.1f} KiB", ""]
    lines += [f"  {name:<14} {mb(n):>12}  {note}" for name, n, note in rows]
    each = "pool + the larger of branches and full forward"
    lines += ["", f"  {'predicted peak':<14} {mb(plan.peak_bytes):>12}  runtime + weights + "
                  + (each if plan.processes == 1 else f"{plan.processes} x ({each}), one per forked process")]
    return "\n".join(lines)
