"""armlens: a mechanistic-interpretability workbench for Activation Reward Models (ARMs).

Layers, lowest first (a lower layer never imports a higher one):

- ``armlens.model``       load models (the one package that talks to TransformerLens' ``TransformerBridge``)
- ``armlens.data``        preference pairs, loaders, splits, the bias suite
- ``armlens.prompts``     judge prompts through the chat template
- ``armlens.patching``    capture and overwrite ``blocks.{l}.attn.hook_z`` at the last token
- ``armlens.activations`` mean activations and their estimators (mean, weighted-PCA denoising, ...)
- ``armlens.scoring``     P(Yes), normalised P(Yes), Yes-No logit difference
- ``armlens.selection``   head selection (REINFORCE and alternatives)
- ``armlens.rm``          ``ActivationRM``: fit / score / save / load
- ``armlens.evaluation``  RewardBench protocol, baselines, ``armlens eval``
- ``armlens.analysis``    head analysis and stage ablations; ``armlens.plots`` draws them
"""

__version__ = "0.1.0"

_LAZY = {
    "ArmlensError": "armlens.errors",
    "ActivationRM": "armlens.rm",
    "ARMConfig": "armlens.rm",
    "ReinforceConfig": "armlens.selection",
    "JudgeTemplate": "armlens.prompts",
    "load_model": "armlens.model",
    "model_info": "armlens.model",
    "load_pairs": "armlens.data",
    "split_pairs": "armlens.data",
    "PreferencePair": "armlens.data",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):  # lazy: `armlens --help` must not import torch
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'armlens' has no attribute {name!r}")
