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

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so that ``armlens --help`` never imports torch; type checkers and editors read the same names
# from the TYPE_CHECKING block below (tests/test_public_api.py checks that the two lists agree).
_LAZY = {
    "ArmlensError": "armlens.errors",
    "ActivationRM": "armlens.rm",
    "ARMConfig": "armlens.arm_config",
    "CriterionARM": "armlens.rm",
    "ReinforceConfig": "armlens.selection",
    "JudgeTemplate": "armlens.prompts",
    "load_model": "armlens.model",
    "model_info": "armlens.model",
    "load_pairs": "armlens.data",
    "split_pairs": "armlens.data",
    "PreferencePair": "armlens.data",
}
__all__ = [
    "ARMConfig",
    "ActivationRM",
    "ArmlensError",
    "CriterionARM",
    "JudgeTemplate",
    "PreferencePair",
    "ReinforceConfig",
    "load_model",
    "load_pairs",
    "model_info",
    "split_pairs",
]

if TYPE_CHECKING:
    from armlens.arm_config import ARMConfig
    from armlens.data import PreferencePair, load_pairs, split_pairs
    from armlens.errors import ArmlensError
    from armlens.model import load_model, model_info
    from armlens.prompts import JudgeTemplate
    from armlens.rm import ActivationRM, CriterionARM
    from armlens.selection import ReinforceConfig
else:

    def __getattr__(name: str) -> Any:  # lazy: `armlens --help` must not import torch
        if name in _LAZY:
            import importlib

            return getattr(importlib.import_module(_LAZY[name]), name)
        raise AttributeError(f"module 'armlens' has no attribute {name!r}")
