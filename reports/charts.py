"""Charts drawn on the server from stored numbers (matplotlib, no CDN, no JavaScript needed).

Each function returns an SVG document as text; `as_data_uri` turns it into an <img src>. Colours follow
the verdict badges of portal.css, so a verdict looks the same everywhere."""
import base64
import io

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from inference.models import VERDICT_LABELS

VERDICT_COLOURS = {
    "real_tumor": "#1f6fa8",
    "no_tumor": "#2e8b57",
    "fake_added": "#c0392b",
    "fake_removed": "#7d3c98",
    "pending": "#9aa5b1",
    "succeeded": "#2e8b57",
    "failed": "#c0392b",
}
OTHER_COLOURS = ["#6c7a89", "#d68910", "#17a589", "#a04000"]
TEXT = "#1f2933"


def colour_for(label: str, i: int = 0) -> str:
    return VERDICT_COLOURS.get(label, OTHER_COLOURS[i % len(OTHER_COLOURS)])


def pretty(label: str) -> str:
    """A verdict in the words a doctor reads everywhere else ("Real tumor"); other names without underscores."""
    return VERDICT_LABELS.get(label) or label.replace("_", " ")


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    # Text stays text (selectable, searchable, read by screen readers), not outlines.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def as_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _figure(width=5.0, height=3.2) -> Figure:
    fig = Figure(figsize=(width, height))
    fig.patch.set_alpha(0)
    return fig


def bar_chart_svg(values: dict[str, float], *, title: str, ylabel: str, ylim=(0, 1)) -> str:
    labels = list(values)
    fig = _figure()
    ax = fig.add_subplot()
    bars = ax.bar([pretty(l) for l in labels], [values[l] for l in labels],
                  color=[colour_for(l, i) for i, l in enumerate(labels)])
    ax.bar_label(bars, fmt="%.3f", fontsize=8, color=TEXT)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="x", labelsize=8)
    return _svg(fig)


def pie_chart_svg(counts: dict[str, int], *, title: str) -> str:
    labels = [l for l in counts if counts[l] > 0]
    fig = _figure(4.2, 3.2)
    ax = fig.add_subplot()
    if labels:
        ax.pie([counts[l] for l in labels], labels=[f"{pretty(l)} ({counts[l]})" for l in labels],
               colors=[colour_for(l, i) for i, l in enumerate(labels)], autopct="%1.0f%%",
               textprops={"fontsize": 8, "color": TEXT}, wedgeprops={"linewidth": 1, "edgecolor": "white"})
    ax.set_title(title, fontsize=10)
    ax.axis("equal")
    return _svg(fig)


def heatmap_svg(labels: list[str], matrix: list[list[int]], *, title: str, xlabel: str, ylabel: str) -> str:
    data = np.asarray(matrix, dtype=float)
    fig = _figure(4.6, 3.9)
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap="Blues", vmin=0)
    ticks = [pretty(l) for l in labels]
    ax.set_xticks(range(len(labels)), ticks, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), ticks, fontsize=8)
    threshold = data.max() / 2 if data.size else 0
    for (r, c), value in np.ndenumerate(data):
        ax.text(c, r, f"{int(value)}", ha="center", va="center", fontsize=9,
                color="white" if value > threshold else TEXT)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _svg(fig)


def _period_axis(ax, periods: list[str]) -> None:
    # At most ~15 labels, however many periods.
    step = max(1, -(-len(periods) // 15))
    ax.set_xticks(range(0, len(periods), step), periods[::step], rotation=45, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(periods) - 0.4)


def stacked_bars_over_time_svg(periods: list[str], series: dict[str, list[int]], *, title: str, ylabel: str) -> str:
    fig = _figure(8.0, 2.8)
    ax = fig.add_subplot()
    x = np.arange(len(periods))
    bottom = np.zeros(len(periods))
    for i, (name, counts) in enumerate(series.items()):
        ax.bar(x, counts, bottom=bottom, label=pretty(name), color=colour_for(name, i))
        bottom += np.asarray(counts, dtype=float)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    _period_axis(ax, periods)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if series:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    return _svg(fig)


def lines_over_time_svg(periods: list[str], series: dict[str, list[float | None]], *, title: str, ylabel: str) -> str:
    fig = _figure(8.0, 2.8)
    ax = fig.add_subplot()
    x = np.arange(len(periods))
    for i, (name, values) in enumerate(series.items()):
        ys = [np.nan if v is None else v for v in values]
        ax.plot(x, ys, marker="o", markersize=3, label=name, color=OTHER_COLOURS[i % len(OTHER_COLOURS)])
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    _period_axis(ax, periods)
    if series:
        ax.legend(fontsize=7, frameon=False)
    return _svg(fig)
