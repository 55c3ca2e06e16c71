"""Judges that learn from the model's activations on the judge prompt: a logistic-regression ``probe``, a CAA
``steering`` vector added to the residual stream, and ``savs`` (per-head class-mean votes on hook_z).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from armlens import model as M
from armlens.data.records import PreferencePair
from armlens.errors import BadInputError
from armlens.evaluation.judge import Judge, JudgeConfig
from armlens.prompts import AnswerIds, Example
from armlens.scoring import score_from_logits
from armlens.typing import Model

# ------------------------------------------------------------------------------------------------------ activations


def resid_name(layer: int) -> str:
    """``blocks.{layer}.hook_resid_post``."""
    return M.resid_post_name(layer)


def _check_hook(model: Model, name: str) -> None:
    if name not in model.hook_dict:
        raise BadInputError(f"the model has no hook point {name!r}")


def grab_last_hook(
    x: Float[Tensor, "batch pos d_model"], hook: Any, *, store: dict[int, Tensor], key: int
) -> None:
    """Keep ``x[:, -1]`` (the last real token under left padding) in ``store[key]``."""
    store[key] = x[:, -1].detach().float().cpu().clone()


def add_vector_hook(
    x: Float[Tensor, "batch pos d_model"], hook: Any, *, vector: Float[Tensor, " d_model"], coef: float,
    positions: Literal["last", "all"] = "last",
) -> Float[Tensor, "batch pos d_model"]:
    """Add ``coef * vector`` to the residual stream at the last position (or every position)."""
    x = x.clone()
    v = (coef * vector).to(x.device, x.dtype)
    if positions == "all":
        x = x + v
    else:
        x[:, -1] = x[:, -1] + v
    return x


def last_resid(
    model: Model, texts: Sequence[str], layers: Sequence[int], *, batch_size: int = 4, show_progress: bool = False,
    desc: str = "residual stream",
) -> dict[int, Float[Tensor, "batch d_model"]]:
    """``blocks.{l}.hook_resid_post`` at each text's last token, for every layer in ``layers`` (one pass per batch)."""
    for layer in layers:
        _check_hook(model, resid_name(layer))
    parts: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    batches = M.length_batches(texts, batch_size)
    for idx in tqdm(batches, desc=desc, disable=not show_progress, leave=False):
        store: dict[int, Tensor] = {}
        hooks = [(resid_name(layer), functools.partial(grab_last_hook, store=store, key=layer)) for layer in layers]
        M.run_last_logits(model, *M.tokenize(model, [texts[i] for i in idx]), hooks)
        for layer in layers:
            parts[layer].append(store[layer])
    inverse = torch.tensor([i for idx in batches for i in idx]).argsort()
    return {layer: torch.cat(parts[layer])[inverse] for layer in layers}


def last_hook_z(
    model: Model, texts: Sequence[str], *, batch_size: int = 4, show_progress: bool = False, desc: str = "hook_z",
) -> Float[Tensor, "batch n_layers n_heads d_head"]:
    """Every head's hook_z at each text's last token."""
    parts = []
    batches = M.length_batches(texts, batch_size)
    for idx in tqdm(batches, desc=desc, disable=not show_progress, leave=False):
        z, _ = M.capture_hook_z_and_logits(model, *M.tokenize(model, [texts[i] for i in idx]))
        parts.append(z.cpu())
    return torch.cat(parts)[torch.tensor([i for idx in batches for i in idx]).argsort()]


def _labels(examples: Sequence[Example]) -> Tensor:
    return torch.tensor([bool(e.label) for e in examples])


def _union(a: Sequence[PreferencePair], b: Sequence[PreferencePair]) -> list[PreferencePair]:
    seen, out = set(), []
    for p in list(a) + list(b):
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


# ----------------------------------------------------------------------------------------------------------- judges


class _LastTokenReader(Judge):
    """A judge that always scores in the branch pass, from the activations its :meth:`branch_reads` names at the
    unpatched last token (it patches nothing)."""

    @classmethod
    def in_branch_pass(cls, config: JudgeConfig) -> bool:
        return True

    def patch_for(self, pair: PreferencePair) -> tuple[None, None]:
        return None, None


class ProbeJudge(_LastTokenReader):
    name = "probe"
    reads = "logistic regression on last-token activations (residual stream or all hook_z) of the zero-shot prompt"
    trains = True
    settings = ("template", "criterion", "batch_size", "seed", "probe.features", "probe.layer", "probe.c")
    fit_state = ("scaler_mean", "scaler_scale", "coef", "intercept")

    scaler_mean: Tensor
    scaler_scale: Tensor
    coef: Tensor
    intercept: Tensor

    def _layer(self) -> int:
        n = self.model.cfg.n_layers
        layer = self.config.probe.layer if self.config.probe.layer is not None else n // 2
        if not 0 <= layer < n:
            raise BadInputError(f"probe.layer {layer} is outside the model's {n} layers")
        return layer

    def _features(self, examples: Sequence[Example]) -> Float[Tensor, "batch d"]:
        cfg = self.config
        texts = self._prompts(examples)
        if cfg.probe.features == "hook_z":
            z = last_hook_z(self.model, texts, batch_size=cfg.batch_size, show_progress=cfg.show_progress)
            return z.flatten(1)
        if cfg.probe.features != "resid":
            raise BadInputError(f"unknown probe features {cfg.probe.features!r}; choose resid or hook_z")
        layer = self._layer()
        return last_resid(self.model, texts, [layer], batch_size=cfg.batch_size, show_progress=cfg.show_progress)[layer]

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train = self._examples(_union(few_shot, select))
        x, y = self._features(train).double().numpy(), _labels(train).numpy()
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.config.probe.c, max_iter=2000, random_state=self.config.seed)
        ).fit(x, y)
        scaler, lr = clf[0], clf[-1]
        if list(lr.classes_) != [False, True]:
            raise BadInputError(f"the probe needs Yes and No examples, got classes {list(lr.classes_)}")
        self.scaler_mean, self.scaler_scale = torch.from_numpy(scaler.mean_), torch.from_numpy(scaler.scale_)
        self.coef, self.intercept = torch.from_numpy(lr.coef_[0]), torch.from_numpy(lr.intercept_)
        self.fit_info.update(
            n_train=len(train), features=self.config.probe.features, n_features=int(x.shape[1]),
            layer=self._layer() if self.config.probe.features == "resid" else None,
            train_accuracy=float(clf.score(x, y)),
        )

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        return self._predict(self._features(self._queries(items)))

    def _predict(self, x: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        """P(Yes) of the fitted scaler and logistic regression (sklearn's ``predict_proba``, in float64)."""
        z = ((x.double() - self.scaler_mean) / self.scaler_scale) @ self.coef + self.intercept
        return torch.sigmoid(z).float()

    # in the branch pass: the features are the unpatched last token's activations there

    def branch_reads(self) -> list[str]:
        if self.config.probe.features == "hook_z":
            return [M.hook_z_name(layer) for layer in range(self.model.cfg.n_layers)]
        return [resid_name(self._layer())]

    def score_reads(self, reads: dict[str, Tensor]) -> Float[Tensor, " n"]:
        if self.config.probe.features == "hook_z":  # [n, n_heads, d_head] per layer, as last_hook_z flattens them
            x = torch.stack([reads[name] for name in self.branch_reads()], dim=1).flatten(1)
        else:
            x = reads[resid_name(self._layer())]
        return self._predict(x)


class SteeringJudge(Judge):
    name = "steering"
    reads = "P(Yes) of the zero-shot prompt with a CAA mean-difference vector added to the residual stream"
    trains = True
    settings = ("template", "criterion", "batch_size", "score", "steering.layers", "steering.coefs",
                "steering.positions")
    fit_state = ("vector", "layer", "coef")

    vector: Tensor
    layer: int
    coef: float

    def _candidates(self) -> list[int]:
        n = self.model.cfg.n_layers
        layers = list(self.config.steering.layers) if self.config.steering.layers is not None else [n // 2]
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad or not layers:
            raise BadInputError(f"steering layers {bad or layers} are not within the model's {n} layers")
        if not self.config.steering.coefs:
            raise BadInputError("steering needs at least one coefficient")
        return layers

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        cfg = self.config
        layers = self._candidates()
        examples = self._examples(few_shot)
        prompts = self._prompts(examples)
        # each prompt with the correct and with the wrong answer appended (the answer token is the last token)
        right = [p + (cfg.template.yes if e.label else cfg.template.no) for p, e in zip(prompts, examples, strict=True)]
        wrong = [p + (cfg.template.no if e.label else cfg.template.yes) for p, e in zip(prompts, examples, strict=True)]
        acts = last_resid(self.model, right + wrong, layers, batch_size=cfg.batch_size,
                          show_progress=cfg.show_progress, desc="steering vectors")
        n = len(right)
        vectors = {layer: acts[layer][:n].mean(0) - acts[layer][n:].mean(0) for layer in layers}
        grid = [(layer, float(c)) for layer in layers for c in cfg.steering.coefs]
        results = []
        if len(grid) > 1:  # choose on the selection pairs by strict pairwise accuracy, then mean margin
            for layer, coef in grid:
                self.vector, self.layer, self.coef = vectors[layer], layer, coef
                scores = self._score([(p, r) for p in select for r in (p.chosen, p.rejected)])
                c, r = scores[0::2], scores[1::2]
                results.append({"layer": layer, "coef": coef, "accuracy": float((c > r).float().mean()),
                                "margin": float((c - r).mean())})
            best = max(results, key=lambda d: (d["accuracy"], d["margin"]))
            layer, coef = best["layer"], best["coef"]
        else:
            layer, coef = grid[0]
        self.vector, self.layer, self.coef = vectors[layer], layer, coef
        self.fit_info.update(layer=layer, coef=coef, vector_norm=float(vectors[layer].norm()), grid=results,
                             positions=cfg.steering.positions, n_examples=len(examples))

    @classmethod
    def in_branch_pass(cls, config: JudgeConfig) -> bool:
        return config.steering.positions == "last"  # added at every position, it changes the prefix too

    def patch_for(self, pair: PreferencePair) -> tuple[None, None]:
        return None, None

    def resid_for(self, pair: PreferencePair) -> tuple[int, Tensor]:
        return self.layer, self.coef * self.vector

    def hooks(self) -> list[M.Hook]:
        """The steering hook (with coefficient 0 it adds nothing: the zero-shot judge)."""
        name = resid_name(self.layer)
        _check_hook(self.model, name)
        fn = functools.partial(add_vector_hook, vector=self.vector, coef=self.coef,
                               positions=self.config.steering.positions)
        return [(name, fn)]

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        ids = AnswerIds.of(self.model, cfg.template)
        texts = self._prompts(self._queries(items))
        out = torch.empty(len(texts))
        hooks = self.hooks()
        for idx in tqdm(M.length_batches(texts, cfg.batch_size), desc=self.name, disable=not cfg.show_progress,
                        leave=False):
            logits = M.run_last_logits(self.model, *M.tokenize(self.model, [texts[i] for i in idx]), hooks)
            out[idx] = score_from_logits(logits, ids.yes, ids.no, cfg.score).cpu()
        return out


class SAVsJudge(_LastTokenReader):
    name = "savs"
    reads = "per-head nearest-class-mean votes (cosine) on last-token hook_z; the top-k heads by accuracy vote"
    trains = True
    settings = ("template", "criterion", "batch_size", "savs.top_k", "savs.score")
    fit_state = ("mu_yes", "mu_no", "mask")

    mu_yes: Tensor
    mu_no: Tensor
    mask: Tensor

    def _fit(self, few_shot: list[PreferencePair], select: list[PreferencePair]) -> None:
        cfg = self.config
        fs = self._examples(few_shot)
        z = last_hook_z(self.model, self._prompts(fs), batch_size=cfg.batch_size, show_progress=cfg.show_progress)
        y = _labels(fs)
        self.mu_yes, self.mu_no = z[y].mean(0), z[~y].mean(0)  # [n_layers, n_heads, d_head]
        sel = fs if [p.id for p in select] == [p.id for p in few_shot] else self._examples(select)
        z_sel = z if sel is fs else last_hook_z(self.model, self._prompts(sel), batch_size=cfg.batch_size,
                                                show_progress=cfg.show_progress)
        votes = self._votes(z_sel)  # [batch, n_layers, n_heads]
        accuracy = (votes == _labels(sel)[:, None, None]).float().mean(0)
        n_layers, n_heads = accuracy.shape
        k = min(cfg.savs.top_k, n_layers * n_heads)
        if k < 1:
            raise BadInputError("savs.top_k must be >= 1")
        # stable ranking: higher accuracy first, then lower head index
        flat = accuracy.flatten()
        order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))[:k]
        self.mask = torch.zeros(flat.numel(), dtype=torch.bool)
        self.mask[order] = True
        self.mask = self.mask.view(n_layers, n_heads)
        self.fit_info.update(
            heads=[f"L{i // n_heads}H{i % n_heads}" for i in order], head_accuracy=[float(flat[i]) for i in order],
            n_few_shot_examples=len(fs), n_selection_examples=len(sel), score=cfg.savs.score,
        )

    def _margins(self, z: Float[Tensor, "batch n_layers n_heads d_head"]) -> Float[Tensor, "batch n_layers n_heads"]:
        cos = torch.nn.functional.cosine_similarity
        return cos(z, self.mu_yes.unsqueeze(0), dim=-1) - cos(z, self.mu_no.unsqueeze(0), dim=-1)

    def _votes(self, z: Float[Tensor, "batch n_layers n_heads d_head"]) -> Tensor:
        return self._margins(z) > 0

    def _score(self, items: list[tuple[PreferencePair, str]]) -> Float[Tensor, " n"]:
        cfg = self.config
        z = last_hook_z(self.model, self._prompts(self._queries(items)), batch_size=cfg.batch_size,
                        show_progress=cfg.show_progress, desc=self.name)
        return self._from_z(z)

    def _from_z(self, z: Float[Tensor, "batch n_layers n_heads d_head"]) -> Float[Tensor, " n"]:
        margins = self._margins(z)[:, self.mask]
        return margins.mean(-1) if self.config.savs.score == "margin" else (margins > 0).float().mean(-1)

    # in the branch pass: hook_z of the voting heads' layers at the unpatched last token

    def _voting_layers(self) -> list[int]:
        return [layer for layer in range(self.mask.shape[0]) if bool(self.mask[layer].any())]

    def branch_reads(self) -> list[str]:
        return [M.hook_z_name(layer) for layer in self._voting_layers()]

    def score_reads(self, reads: dict[str, Tensor]) -> Float[Tensor, " n"]:
        n = next(iter(reads.values())).shape[0]
        z = torch.zeros(n, *self.mu_yes.shape)  # heads outside the voting layers are never read
        for layer in self._voting_layers():
            z[:, layer] = reads[M.hook_z_name(layer)]
        return self._from_z(z)
