"""The head picker's ipywidgets view: a clickable ``FigureWidget`` grid, presets, text areas and the readout."""

from __future__ import annotations

import html
import time
from typing import Any

from armlens.data.records import Prompt
from armlens.patching import head_label
from armlens.widgets.picker import EFFECT, PRESETS, HeadPicker
from armlens.widgets.snapshot import SNAPSHOT_STYLE, Readout, readout_html


class HeadPickerView:
    """The ipywidgets view of a :class:`HeadPicker`: a clickable ``FigureWidget`` grid, presets, text areas and
    the readout. Displaying it in a frontend without the widget manager shows :meth:`HeadPicker.snapshot_html`."""

    def __init__(self, picker: HeadPicker, map_name: str | None = None):
        import ipywidgets as W
        import plotly.graph_objects as go

        self.picker = picker
        self.map_name = map_name or picker.map_names[0]
        self.latencies: list[float] = []
        """Seconds from each click to the updated view (readout and figures), as :meth:`click` measured them."""
        self.last: Readout | None = None
        self._quiet = self._quiet_text = False

        self.grid = go.FigureWidget(self._grid_figure())
        # Only the heatmap takes clicks: the crosses skip hover, so a click on one lands on its cell (one event, one
        # toggle, never one per trace under the pointer).
        self.grid.data[0].on_click(self._on_click)
        self.attention = go.FigureWidget(layout={
            "template": "plotly_white", "height": 230, "width": 560, "barmode": "overlay",
            "margin": {"l": 50, "r": 10, "t": 36, "b": 40}, "font": {"size": 11},
            "xaxis": {"title": {"text": "key position"}}, "yaxis": {"title": {"text": "attention"}},
            "legend": {"orientation": "h", "y": 1.12, "x": 0}})
        self.attention.add_bar(name="unpatched", marker_color="#7f7f7f", opacity=0.6)
        self.attention.add_bar(name="patched", marker_color="#d62728", opacity=0.6)

        area = {"layout": W.Layout(width="32%", height="70px"), "continuous_update": False}
        self.prompt = W.Textarea(value=picker.prompt, description="prompt", **area)
        self.response = W.Textarea(value=picker.response, description="response", **area)
        self.criterion = W.Textarea(value=picker.criterion, description="criterion", **area)
        for box in (self.prompt, self.response, self.criterion):
            box.observe(self._on_text, names="value")
        self.maps = W.Dropdown(options=picker.map_names, value=self.map_name, description="colour by",
                               layout=W.Layout(width="320px"))
        self.maps.observe(self._on_map, names="value")
        # The label takes its own width: at the default (80 px for any label) the 110 px box left its number no
        # room, and JupyterLab showed it empty (seen in tests/test_picker_browser.py's screenshot).
        self.k = W.BoundedIntText(value=picker.attribution_k, min=1, max=picker.mask.numel(), description="k",
                                  layout=W.Layout(width="110px"), style={"description_width": "initial"})
        self.buttons = {name: W.Button(description=label, layout=W.Layout(width="auto"))
                        for name, label in PRESETS.items()}
        for name, button in self.buttons.items():
            button.on_click(lambda _b, name=name: self.apply_preset(name))
        labels = [head_label(layer, h) for layer in range(picker.shape[0]) for h in range(picker.shape[1])]
        self.head = W.Dropdown(options=labels, value=head_label(*picker.attention_head), description="attention of",
                               layout=W.Layout(width="200px"))
        self.head.observe(self._on_head, names="value")
        self.readout_box = W.HTML()
        self.status = W.HTML()
        # CSS classes name the parts in the page, for styling and for the browser test
        # (tests/test_picker_browser.py), which finds them by these names rather than by layout.
        for part, name in ((self.grid, "grid"), (self.readout_box, "readout"), (self.status, "status"),
                           (self.prompt, "prompt"), (self.response, "response"), (self.criterion, "criterion"),
                           (self.k, "k"),
                           *((b, f"preset-{n}") for n, b in self.buttons.items())):
            part.add_class(f"armlens-picker-{name}")
        self.widget = W.VBox([
            W.HBox([self.prompt, self.response, self.criterion]),
            W.HBox([W.HTML("<b>presets</b>&nbsp;"), *self.buttons.values(), self.k, self.maps, self.head]),
            self.status,
            W.HBox([self.grid, W.VBox([self.readout_box, self.attention])]),
        ])
        self.refresh()

    # -------------------------------------------------------------------------------- drawing

    def _grid_figure(self) -> Any:
        import plotly.graph_objects as go

        from armlens.plots import plot_head_map

        values, signed = self.picker.head_map(self.map_name)
        fig = plot_head_map(values, title="Click a head to patch it", colorbar_title=self.map_name[:24],
                            signed=signed, subtitle=f"colour: {self.map_name}; x: patched")
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="patched", showlegend=False, hoverinfo="skip",
                                 marker={"symbol": "x-thin", "size": 10, "line": {"width": 2.5, "color": "#d62728"}}))
        fig.update_layout(width=480, height=640, clickmode="event")
        return fig

    def _draw(self, r: Readout) -> None:
        idx = self.picker.mask.nonzero().tolist()
        with self.grid.batch_update():
            marks = self.grid.data[1]
            marks.x = [h for _, h in idx]
            marks.y = [layer for layer, _ in idx]
            marks.text = [head_label(layer, h) for layer, h in idx]
        row = r.attention
        hover = [repr(t) for t in row.tokens]
        with self.attention.batch_update():
            pos = list(range(len(row.weights)))
            self.attention.data[0].update(x=pos, y=row.weights, hovertext=hover)
            self.attention.data[1].update(x=pos if row.patched_weights else [], y=row.patched_weights or [],
                                          hovertext=hover, visible=row.patched_weights is not None)
            self.attention.layout.title = {"text": f"{row.label}: attention from the read position", "x": 0.01}
        self.readout_box.value = f"{SNAPSHOT_STYLE}<div class='armlens-picker'>{readout_html(r)}</div>"
        self.status.value = (f"<span style='color:#555'>P(Yes) {r.p_yes[0]:.4f} &rarr; <b>{r.p_yes[1]:.4f}</b>; "
                             f"margin {r.margin[0]:+.3f} &rarr; <b>{r.margin[1]:+.3f}</b></span>")

    def refresh(self) -> Readout:
        """Read the judge for the current state and redraw."""
        self.last = self.picker.readout()
        self._draw(self.last)
        if not self._quiet and self.head.value != head_label(*self.picker.attention_head):
            self._quiet = True
            try:
                self.head.value = head_label(*self.picker.attention_head)
            finally:
                self._quiet = False
        return self.last

    # -------------------------------------------------------------------------------- events

    def click(self, layer: int, head: int) -> Readout:
        """What clicking cell (layer, head) does: toggle it and redraw; the time it took is kept in ``latencies``."""
        t0 = time.perf_counter()
        self.picker.toggle(layer, head)
        r = self.refresh()
        self.latencies.append(time.perf_counter() - t0)
        return r

    def set_text(self, prompt: Prompt | None = None, response: str | None = None, criterion: str | None = None) -> Readout:
        """Change the judged texts as typing into the text areas does, with one redraw."""
        self.picker.set_text(prompt, response, criterion)
        self._quiet_text = True
        try:
            self.prompt.value, self.response.value = self.picker.prompt, self.picker.response
            self.criterion.value = self.picker.criterion
        finally:
            self._quiet_text = False
        if self.map_name == EFFECT:
            self._redraw_map()
        return self.refresh()

    def _on_click(self, trace: Any, points: Any, selector: Any = None) -> None:
        if not points.point_inds:
            return
        self.click(round(points.ys[0]), round(points.xs[0]))

    def apply_preset(self, name: str) -> Readout:
        self.picker.preset(name, k=self.k.value if name == "topk" else None)
        if name == "topk" and self.map_name != EFFECT:
            self.maps.value = EFFECT  # show the map the preset ranked by (redraws the grid)
        return self.refresh()

    def _on_text(self, change: dict[str, Any]) -> None:
        if self._quiet_text:
            return
        try:
            self.picker.set_text(self.prompt.value, self.response.value, self.criterion.value)
        except ValueError as e:
            self.status.value = f"<span style='color:#d62728'>{html.escape(str(e))}</span>"
            return
        if self.map_name == EFFECT:
            self._redraw_map()
        self.refresh()

    def _on_map(self, change: dict[str, Any]) -> None:
        self.map_name = change["new"]
        self._redraw_map()

    def _redraw_map(self) -> None:
        new = self._grid_figure()
        heat = new.data[0].to_plotly_json()
        heat.pop("type", None)
        with self.grid.batch_update():
            self.grid.data[0].update(heat)
            self.grid.layout.title = new.layout.title

    def _on_head(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.picker.set_attention_head(change["new"])
        self._quiet = True
        try:
            self.refresh()
        finally:
            self._quiet = False

    # -------------------------------------------------------------------------------- display

    def snapshot_html(self) -> str:
        return self.picker.snapshot_html(self.last, self.map_name)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        data["text/html"] = self.snapshot_html()  # shown by frontends without the widget manager
        return data

