"""Figures: every plot takes tensors or tidy DataFrames (from :mod:`armlens.analysis`) and returns a plotly Figure.

Conventions (``docs/style.md``): head maps have "Layer" on the vertical axis (layer 0 at the top, as in
TransformerLens' ``imshow``) and "Head" on the horizontal one, hover labels ``L{l}H{h}``; signed effects use RdBu
centred at 0 with a symmetric range; shares and probabilities use a sequential scale fixed to [0, 1]; every
accuracy point carries its interval across seeds; every figure has a title and labelled axes with units.

Nothing here computes: :func:`write_figures` only writes HTML (always, ``include_plotlyjs="cdn"``) and PNG (through
kaleido, which needs a Chrome-family browser: :func:`find_browser`, :class:`BrowserNotFoundError`).

By figure family: :mod:`~armlens.plots.heads` (head maps, REINFORCE, attribution, attention),
:mod:`~armlens.plots.ablations` (stage ablations), :mod:`~armlens.plots.evaluation` (``armlens eval`` accuracy and bias suite),
:mod:`~armlens.plots.export` (writing files); :mod:`~armlens.plots.style` holds the shared style. Every figure
function is imported from ``armlens.plots``.
"""


from armlens.plots.ablations import (
    AXIS_TITLES,
    SERIES_NAMES,
    SETTING_NAMES,
    X_TITLES,
    plot_ablation,
    plot_ablation_overview,
    plot_sweep,
)
from armlens.plots.evaluation import plot_hack_rates, plot_method_accuracy
from armlens.plots.export import (
    BROWSER_HELP,
    BrowserNotFoundError,
    find_browser,
    quiet_export_logs,
    write_figures,
)
from armlens.plots.heads import (
    plot_attention,
    plot_attribution,
    plot_head_map,
    plot_jaccard,
    plot_selection_probability,
    plot_stability,
    plot_training_curves,
    plot_trajectory,
    plot_trajectory_slider,
    plot_transfer,
)
from armlens.plots.style import ACC_TITLE, FONT, SERIES_COLOURS, SHARE, SIGNED

__all__ = [
    "ACC_TITLE", "AXIS_TITLES", "BROWSER_HELP", "FONT", "SERIES_COLOURS", "SERIES_NAMES", "SETTING_NAMES", "SHARE",
    "SIGNED", "X_TITLES", "BrowserNotFoundError", "find_browser", "plot_ablation", "plot_ablation_overview",
    "plot_attention", "plot_attribution", "plot_hack_rates", "plot_head_map", "plot_jaccard", "plot_method_accuracy",
    "plot_selection_probability", "plot_stability", "plot_sweep", "plot_trajectory", "plot_trajectory_slider",
    "plot_training_curves", "plot_transfer", "quiet_export_logs", "write_figures",
]
