"""armlens.typing: the Model alias accepts bridges only, and importing it does not import transformer_lens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from armlens.typing import HeadMask, Masks, Model

ROOT = Path(__file__).resolve().parents[1]


def test_model_alias_is_the_bridge(tiny, tiny_gqa):
    from transformer_lens.model_bridge import TransformerBridge

    assert isinstance(tiny, Model) and isinstance(tiny_gqa, Model) and isinstance(tiny, TransformerBridge)
    assert not isinstance(tiny.original_model, Model) and not isinstance(None, Model)


def test_importing_the_aliases_stays_light():
    code = "import sys, armlens.typing, armlens.model; print('transformer_lens' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_tensor_aliases_are_shared():
    from armlens import activations, analysis, patching, plots, selection

    assert patching.HeadMask is plots.heads.HeadMask is HeadMask
    assert selection.Masks is analysis.heads.Masks is Masks
    assert activations.Means is patching.Means
    assert isinstance(torch.zeros(2, 3, dtype=torch.bool), HeadMask)
    assert not isinstance(torch.zeros(2, 3), HeadMask)
