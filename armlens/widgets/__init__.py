"""Interactive patching in Jupyter: click heads on a layer x head grid and see the judge change.

.. code-block:: python

    from armlens.widgets import head_picker

    view = head_picker(rm, "How do I boil an egg?", "Boil it for 8 minutes.")   # rm: a fitted ActivationRM
    view                                  # in Jupyter: the grid, presets, text areas and the judge's readout

Two layers, so that the logic is testable without a browser:

- :class:`HeadPicker` is the state: an :class:`~armlens.rm.ActivationRM` (its means are what a patched head is
  overwritten with), the patch set (a ``[n_layers, n_heads]`` mask), the prompt, response and criterion, and the
  head whose attention is shown. :meth:`HeadPicker.readout` returns P(Yes), the Yes-No margin, the ARM's score and
  the top next tokens, patched against unpatched, and where the chosen head attends from the read position.
- :class:`HeadPickerView` is the ipywidgets view: a plotly ``FigureWidget`` grid whose cells toggle heads on click,
  preset buttons, editable text areas, and the readout. Where no widget frontend runs (GitHub, nbconvert HTML
  without the widget manager, a terminal), it shows a static HTML snapshot of the same grid and readout
  (:meth:`HeadPicker.snapshot_html`); so does :func:`head_picker` when ipywidgets is not installed.

Speed: only the last position changes when heads are patched, so each judge prompt's prefix is run once and cached
(:func:`armlens.model.prefix_cache`), and every update is one forward of two copies of the last token over that
cache (unpatched and patched as branches, :func:`armlens.analysis.heads.branches_with_attention`), which also reads
the attention row. A click costs a fraction of a second on the default model; editing a text runs the new prefix
once. ``pip install -e ".[notebooks]"`` installs ipywidgets and anywidget (plotly's ``FigureWidget`` runs on it).
"""

from __future__ import annotations

from typing import Any

from armlens.data.records import Prompt
from armlens.rm import ActivationRM
from armlens.widgets.picker import ARM_HEADS, EFFECT, PRESETS, REINFORCE_PROB, HeadPicker, Preset
from armlens.widgets.snapshot import Readout, grid_html, readout_html
from armlens.widgets.view import HeadPickerView

__all__ = ["ARM_HEADS", "EFFECT", "PRESETS", "REINFORCE_PROB", "HeadPicker", "HeadPickerView", "Preset", "Readout",
           "grid_html", "head_picker", "readout_html", "widgets_available"]


def widgets_available() -> bool:
    """Whether ipywidgets and anywidget (plotly's ``FigureWidget``) are importable."""
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def head_picker(
    rm: ActivationRM, prompt: Prompt, response: str, criterion: str | None = None, *, map_name: str | None = None,
    **kw: Any,
) -> HeadPickerView | HeadPicker:
    """The head picker for ``rm``: the widget where ipywidgets is installed (``pip install -e ".[notebooks]"``),
    else the :class:`HeadPicker` itself, which displays as a static snapshot. ``kw`` go to :class:`HeadPicker`."""
    picker = HeadPicker(rm, prompt, response, criterion, **kw)
    return HeadPickerView(picker, map_name) if widgets_available() else picker

