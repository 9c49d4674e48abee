"""Plotly figures of a run, shared by the live dashboard and the static HTML report.

Every function takes :class:`elm.analysis.Run` objects (or their DataFrames) and
returns a ``plotly.graph_objects.Figure``; none reads program sources. Archive
figures carry the cell index of every drawn cell in ``customdata`` (the first
entry when it is a list), which is what a click reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from elm.analysis import Run
from elm.types import SEED_MUTATOR

__all__ = [
    "METRICS",
    "STATUS_COLORS",
    "archive_figure",
    "compare_figure",
    "mutator_figure",
    "progress_figure",
    "search_figure",
    "summary_rows",
    "throughput_figure",
    "voronoi_labels",
]

#: metrics a comparison can plot: column of ``Run.metrics()`` -> axis title
METRICS = {
    "qd_score": "QD score",
    "coverage": "coverage",
    "max_fitness": "best fitness",
    "mean_fitness": "mean elite fitness",
    "num_elites": "elites",
    "norm_qd_score": "normalised QD score",
}
#: fixed colours of evaluation statuses, so every figure agrees
STATUS_COLORS = {
    "ok": "#2ca02c", "invalid": "#ff7f0e", "error": "#d62728", "timeout": "#9467bd", "memory": "#8c564b",
    "output_limit": "#e377c2", "sandbox_lost": "#7f7f7f", "syntax_error": "#bcbd22",
    "out_of_bounds": "#17becf", "lost": "#393b79", "mutator_error": "#843c39", "malformed": "#ad494a",
    "duplicate": "#c7c7c7",
}
_EMPTY_BG = "#e5e5e5"
_TEMPLATE = "plotly_white"
_MAX_POINTS = 2000


def _status_color(status: str) -> str | None:
    return STATUS_COLORS.get(status)


def _thin(frame: pd.DataFrame, n: int = _MAX_POINTS) -> pd.DataFrame:
    """At most about ``n`` rows, evenly spaced, always keeping the last (curves of long runs)."""
    if len(frame) <= n:
        return frame
    step = math.ceil(len(frame) / n)
    idx = list(range(0, len(frame), step))
    if idx[-1] != len(frame) - 1:
        idx.append(len(frame) - 1)
    return frame.iloc[idx]


def _time_axis(seconds: pd.Series) -> tuple[pd.Series, str]:
    """Wall time in the unit that reads best for its span."""
    span = float(seconds.max()) if len(seconds) else 0.0
    if span >= 3 * 3600:
        return seconds / 3600.0, "wall time (h)"
    if span >= 180:
        return seconds / 60.0, "wall time (min)"
    return seconds, "wall time (s)"


def _message(text: str, height: int = 360) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 15, "color": "#666"})
    fig.update_layout(template=_TEMPLATE, height=height, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


# ---------------------------------------------------------------------- archive


def _edges(lower: float, upper: float, bins: int) -> np.ndarray:
    return np.linspace(lower, upper, bins + 1)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def archive_figure(
    run: Run,
    *,
    slice_dim: int | None = None,
    slice_index: int | None = None,
    axes: Sequence[int] = (0, 1),
    selected: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """The archive as it stands, coloured by elite fitness, on the run's real geometry.

    - grid, 1 or 2 descriptors: one heatmap of every cell (empty cells grey);
    - grid, 3 descriptors: one heatmap panel per bin of ``slice_dim`` (default the
      last), or only panel ``slice_index`` when given;
    - CVT with 2 descriptors: the Voronoi diagram (each pixel coloured by its
      nearest centroid's elite) with the centroids;
    - otherwise (CVT, or a grid of 4+ descriptors): the cells' centres projected on
      descriptors ``axes``, empty ones grey.

    ``selected`` (a cell index) is outlined.
    """
    geometry = run.geometry()
    best = run.cell_fitness()
    names = list(geometry["space"]["names"])
    lower = [float(v) for v in geometry["space"]["lower"]]
    upper = [float(v) for v in geometry["space"]["upper"]]
    cells = int(geometry["cells"])
    fitness = np.full(cells, np.nan)
    ids = np.full(cells, -1, dtype=np.int64)
    for cell, (fit, eid) in best.items():
        if 0 <= cell < cells:
            fitness[cell], ids[cell] = fit, eid
    if geometry["kind"] == "grid":
        lower = [float(v) for v in geometry.get("lower", lower)]
        upper = [float(v) for v in geometry.get("upper", upper)]
        bins = [int(b) for b in geometry["bins"]]
        if len(bins) <= 2:
            fig = _grid_2d(names, lower, upper, bins, fitness, ids, selected)
        elif len(bins) == 3:
            fig = _grid_3d(names, lower, upper, bins, fitness, ids, selected, slice_dim, slice_index)
        else:
            edges = [_edges(lo, hi, b) for lo, hi, b in zip(lower, upper, bins)]
            idx = np.array(np.unravel_index(np.arange(cells), bins)).T
            centres = np.stack([(e[i] + e[i + 1]) / 2 for e, i in zip(edges, idx.T)], axis=1)
            fig = _projection(names, centres, fitness, ids, axes, selected, "cell centres")
    elif geometry["kind"] == "cvt":
        centroids = np.asarray(geometry["centroids"], dtype=np.float64)
        if centroids.shape[1] == 2:
            fig = _voronoi(run, names, lower, upper, centroids, fitness, ids, selected)
        else:
            fig = _projection(names, centroids, fitness, ids, axes, selected, "centroids")
    else:
        return _message(f"unknown archive kind {geometry['kind']!r}")
    n = int(np.isfinite(fitness).sum())
    fig.update_layout(
        template=_TEMPLATE,
        title={"text": f"{geometry['kind']} archive: {n} of {cells} cells filled ({100 * n / cells:.1f} %)",
               "x": 0.01, "font": {"size": 15}},
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        clickmode="event",
    )
    if height:
        fig.update_layout(height=height)
    fig.update_coloraxes(colorscale="Viridis", colorbar={"title": {"text": "fitness"}})
    return fig


def _cell_text(names, edges, index, fit, eid) -> str:
    parts = [f"{n} ∈ [{_fmt(e[i])}, {_fmt(e[i + 1])}]" for n, e, i in zip(names, edges, index)]
    body = f"fitness {fit:.6g}<br>elite #{eid}" if eid >= 0 else "empty"
    return "<br>".join(parts) + "<br>" + body


def _grid_2d(names, lower, upper, bins, fitness, ids, selected) -> go.Figure:
    if len(bins) == 1:  # one descriptor: a single row
        names, lower, upper, bins = names + [""], lower + [0.0], upper + [1.0], bins + [1]
    edges = [_edges(lo, hi, b) for lo, hi, b in zip(lower, upper, bins)]
    grid_fit = fitness.reshape(bins)  # [i0, i1]
    grid_ids = ids.reshape(bins)
    cell_idx = np.arange(fitness.size).reshape(bins)
    text = [[_cell_text(names, edges, (i0, i1), grid_fit[i0, i1], grid_ids[i0, i1]) for i0 in range(bins[0])]
            for i1 in range(bins[1])]
    centres = [(e[:-1] + e[1:]) / 2 for e in edges]
    fig = go.Figure(go.Heatmap(
        x=centres[0], y=centres[1], z=grid_fit.T, customdata=cell_idx.T, text=text,
        hovertemplate="%{text}<extra>cell %{customdata}</extra>", coloraxis="coloraxis",
        xgap=1, ygap=1, hoverongaps=True,
    ))
    w = [(hi - lo) / b for lo, hi, b in zip(lower, upper, bins)]
    fig.update_xaxes(title=names[0], range=[lower[0], upper[0]], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(title=names[1], range=[lower[1], upper[1]], showgrid=False, zeroline=False,
                     scaleanchor="x", scaleratio=w[0] / w[1], constrain="domain")
    fig.update_layout(plot_bgcolor=_EMPTY_BG)
    if selected is not None and 0 <= selected < fitness.size:
        i0, i1 = np.unravel_index(selected, bins)
        fig.add_shape(type="rect", x0=edges[0][i0], x1=edges[0][i0 + 1], y0=edges[1][i1], y1=edges[1][i1 + 1],
                      line={"color": "#d62728", "width": 3})
    return fig


def _grid_3d(names, lower, upper, bins, fitness, ids, selected, slice_dim, slice_index) -> go.Figure:
    sd = 2 if slice_dim is None else int(slice_dim)
    if not 0 <= sd < 3:
        raise ValueError(f"slice_dim must be 0, 1 or 2 for a 3-D grid, got {slice_dim}")
    a, b = [d for d in range(3) if d != sd]
    edges = [_edges(lo, hi, n) for lo, hi, n in zip(lower, upper, bins)]
    centres = [(e[:-1] + e[1:]) / 2 for e in edges]
    grid_fit = fitness.reshape(bins)
    grid_ids = ids.reshape(bins)
    cell_idx = np.arange(fitness.size).reshape(bins)
    slices = list(range(bins[sd])) if slice_index is None else [int(slice_index)]
    if any(not 0 <= s < bins[sd] for s in slices):
        raise ValueError(f"slice_index must be in [0, {bins[sd]}) along {names[sd]!r}, got {slice_index}")
    cols = math.ceil(math.sqrt(len(slices)))
    rows = math.ceil(len(slices) / cols)
    titles = [f"{names[sd]} ∈ [{_fmt(edges[sd][s])}, {_fmt(edges[sd][s + 1])}]" for s in slices]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.04,
                        vertical_spacing=0.1 if rows > 1 else 0.15, shared_xaxes=True, shared_yaxes=True)
    sel_idx = np.unravel_index(selected, bins) if selected is not None and 0 <= selected < fitness.size else None
    for k, s in enumerate(slices):
        take = [slice(None)] * 3
        take[sd] = s
        f2 = grid_fit[tuple(take)]  # axes (a, b) in order
        c2 = cell_idx[tuple(take)]
        i2 = grid_ids[tuple(take)]
        text = []
        for jb in range(bins[b]):
            row = []
            for ja in range(bins[a]):
                index = [0, 0, 0]
                index[a], index[b], index[sd] = ja, jb, s
                row.append(_cell_text(names, edges, index, f2[ja, jb], i2[ja, jb]))
            text.append(row)
        r, c = k // cols + 1, k % cols + 1
        fig.add_trace(go.Heatmap(
            x=centres[a], y=centres[b], z=f2.T, customdata=c2.T, text=text, coloraxis="coloraxis",
            hovertemplate="%{text}<extra>cell %{customdata}</extra>", xgap=1, ygap=1, hoverongaps=True,
        ), row=r, col=c)
        if sel_idx is not None and sel_idx[sd] == s:
            fig.add_shape(type="rect", x0=edges[a][sel_idx[a]], x1=edges[a][sel_idx[a] + 1],
                          y0=edges[b][sel_idx[b]], y1=edges[b][sel_idx[b] + 1],
                          line={"color": "#d62728", "width": 3}, row=r, col=c)
    fig.update_xaxes(range=[lower[a], upper[a]], showgrid=False, zeroline=False)
    fig.update_yaxes(range=[lower[b], upper[b]], showgrid=False, zeroline=False)
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text=names[a], row=rows, col=c)
    for r in range(1, rows + 1):
        fig.update_yaxes(title_text=names[b], row=r, col=1)
    fig.update_layout(plot_bgcolor=_EMPTY_BG, height=max(420, 260 * rows + 80))
    return fig


_VORONOI_CACHE: dict[tuple, np.ndarray] = {}


def voronoi_labels(centroids: np.ndarray, lower: Sequence[float], upper: Sequence[float], *,
                   resolution: int = 240) -> np.ndarray:
    """``(resolution, resolution)`` array: the nearest centroid of each pixel of a 2-D space (row = y)."""
    key = (centroids.shape, float(centroids.sum()), tuple(lower), tuple(upper), resolution)
    hit = _VORONOI_CACHE.get(key)
    if hit is not None:
        return hit
    from elm.archive import _nearest_numpy

    xs = np.linspace(lower[0], upper[0], resolution)
    ys = np.linspace(lower[1], upper[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    labels = _nearest_numpy(np.column_stack([gx.ravel(), gy.ravel()]), centroids).reshape(resolution, resolution)
    if len(_VORONOI_CACHE) > 16:
        _VORONOI_CACHE.clear()
    _VORONOI_CACHE[key] = labels
    return labels


def _voronoi(run, names, lower, upper, centroids, fitness, ids, selected) -> go.Figure:
    res = 240
    labels = voronoi_labels(centroids, lower, upper, resolution=res)
    xs = np.linspace(lower[0], upper[0], res)
    ys = np.linspace(lower[1], upper[1], res)
    fig = go.Figure(go.Heatmap(
        x=xs, y=ys, z=fitness[labels], customdata=labels, coloraxis="coloraxis",
        hovertemplate=f"{names[0]} %{{x:.3g}}<br>{names[1]} %{{y:.3g}}<br>fitness %{{z:.6g}}"
                      "<extra>cell %{customdata}</extra>", hoverongaps=True,
    ))
    occupied = np.isfinite(fitness)
    fig.add_trace(go.Scatter(
        x=centroids[:, 0], y=centroids[:, 1], mode="markers", customdata=np.arange(len(centroids)),
        marker={"size": 4, "color": np.where(occupied, "#222", "#999")}, showlegend=False,
        text=[f"elite #{i}" if i >= 0 else "empty" for i in ids],
        hovertemplate="centroid %{customdata}<br>%{text}<extra></extra>",
    ))
    if selected is not None and 0 <= selected < len(centroids):
        fig.add_trace(go.Scatter(x=[centroids[selected, 0]], y=[centroids[selected, 1]], mode="markers",
                                 marker={"size": 14, "symbol": "circle-open", "color": "#d62728",
                                         "line": {"width": 3}}, customdata=[selected], showlegend=False,
                                 hoverinfo="skip"))
    fig.update_xaxes(title=names[0], range=[lower[0], upper[0]], showgrid=False, constrain="domain")
    fig.update_yaxes(title=names[1], range=[lower[1], upper[1]], showgrid=False, scaleanchor="x",
                     scaleratio=(upper[0] - lower[0]) / (upper[1] - lower[1]), constrain="domain")
    fig.update_layout(plot_bgcolor=_EMPTY_BG)
    return fig


def _projection(names, points, fitness, ids, axes, selected, what) -> go.Figure:
    ax, ay = (int(a) for a in axes)
    d = points.shape[1]
    if not (0 <= ax < d and 0 <= ay < d):
        raise ValueError(f"axes must be two descriptor indices in [0, {d}), got {list(axes)}")
    occupied = np.isfinite(fitness)
    cells = np.arange(len(points))
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=points[~occupied, ax], y=points[~occupied, ay], mode="markers", customdata=cells[~occupied],
        marker={"size": 5, "color": "#c8c8c8"}, name="empty", hovertemplate="cell %{customdata}: empty<extra></extra>",
    ))
    fig.add_trace(go.Scattergl(
        x=points[occupied, ax], y=points[occupied, ay], mode="markers", customdata=cells[occupied],
        marker={"size": 8, "color": fitness[occupied], "coloraxis": "coloraxis"}, name="elites",
        text=[f"fitness {f:.6g}<br>elite #{i}" for f, i in zip(fitness[occupied], ids[occupied])],
        hovertemplate="cell %{customdata}<br>%{text}<extra></extra>",
    ))
    if selected is not None and 0 <= selected < len(points):
        fig.add_trace(go.Scatter(x=[points[selected, ax]], y=[points[selected, ay]], mode="markers",
                                 marker={"size": 16, "symbol": "circle-open", "color": "#d62728",
                                         "line": {"width": 3}}, customdata=[selected], showlegend=False,
                                 hoverinfo="skip"))
    fig.update_xaxes(title=f"{names[ax]} ({what} projected)")
    fig.update_yaxes(title=names[ay])
    return fig


# ---------------------------------------------------------------------- curves


def progress_figure(run: Run) -> go.Figure:
    """QD score, coverage and best fitness, over evaluations (left) and over wall time (right)."""
    m = run.metrics()
    if m.empty:
        return _message("no metrics yet: the run has not recorded a batch")
    m = _thin(m)
    wall, wall_title = _time_axis(m["wall_s"])
    rows = [("qd_score", "QD score"), ("coverage", "coverage"), ("max_fitness", "best fitness")]
    fig = make_subplots(rows=3, cols=2, shared_xaxes="columns", vertical_spacing=0.06, horizontal_spacing=0.08,
                        subplot_titles=["over evaluations", "over wall time", "", "", "", ""])
    for r, (col, title) in enumerate(rows, start=1):
        for c, x in ((1, m["evaluations"]), (2, wall)):
            fig.add_trace(go.Scatter(x=x, y=m[col], mode="lines", line={"color": "#1f77b4", "width": 2},
                                     name=title, showlegend=False,
                                     hovertemplate=f"{title} %{{y:.6g}}<extra></extra>"), row=r, col=c)
            if col == "max_fitness":
                fig.add_trace(go.Scatter(x=x, y=m["mean_fitness"], mode="lines",
                                         line={"color": "#aaaaaa", "width": 1.5, "dash": "dot"},
                                         name="mean elite fitness", showlegend=c == 1,
                                         hovertemplate="mean elite fitness %{y:.6g}<extra></extra>"), row=r, col=c)
            fig.update_yaxes(title_text=title if c == 1 else None, row=r, col=c)
    fig.update_yaxes(tickformat=".0%", row=2)
    fig.update_xaxes(title_text="evaluations", row=3, col=1)
    fig.update_xaxes(title_text=wall_title, row=3, col=2)
    fig.update_layout(template=_TEMPLATE, height=720, hovermode="x unified",
                      margin={"l": 70, "r": 20, "t": 50, "b": 50},
                      legend={"orientation": "h", "y": -0.08})
    return fig


def mutator_figure(run: Run, *, window: int | None = None) -> go.Figure:
    """Per mutator over evaluations: valid rate, insertion rate, new-cell rate, tokens per window."""
    f = run.mutator_stats(window=window)
    f = f[f["mutator"] != SEED_MUTATOR]
    if f.empty:
        return _message("no mutated children yet")
    panels = [("valid_rate", "valid rate", ".0%"), ("insertion_rate", "insertion rate", ".0%"),
              ("new_cell_rate", "new-cell rate", ".1%"), ("tokens", "tokens per window", "~s")]
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.12, horizontal_spacing=0.1,
                        subplot_titles=[p[1] for p in panels])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for k, (name, g) in enumerate(f.groupby("mutator", sort=True)):
        color = palette[k % len(palette)]
        for i, (col, title, fmt) in enumerate(panels):
            fig.add_trace(go.Scatter(
                x=g["window_start"], y=g[col], mode="lines+markers", marker={"size": 4},
                line={"color": color}, name=str(name), legendgroup=str(name), showlegend=i == 0,
                customdata=g["evaluations"],
                hovertemplate=f"{name}: {title} %{{y:{fmt}}} (%{{customdata}} children)<extra></extra>",
            ), row=i // 2 + 1, col=i % 2 + 1)
    for i, (_, _, fmt) in enumerate(panels):
        fig.update_yaxes(tickformat=fmt if fmt != "~s" else None, row=i // 2 + 1, col=i % 2 + 1)
        if fmt != "~s":
            fig.update_yaxes(rangemode="tozero", row=i // 2 + 1, col=i % 2 + 1)
    fig.update_xaxes(title_text="evaluations (window start)", row=2)
    fig.update_layout(template=_TEMPLATE, height=620, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      legend={"title": {"text": "mutator"}})
    return fig


def search_figure(run: Run, *, window: int | None = None) -> go.Figure:
    """The search machinery over evaluations (docs/search.md): each operator's share of the children
    (fixed weights, or the bandit's), each island's best fitness with its migrations and resets,
    and each mutator's duplicate rate per window (children that repeated a program already evaluated)."""
    shares, islands, events = run.operator_shares(), run.island_stats(), run.island_events()
    dup = run.mutator_stats(window=window)
    dup = dup[dup["mutator"] != SEED_MUTATOR]
    if shares.empty and islands.empty and dup.empty:
        return _message("no mutated children yet")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["operator shares", "best fitness per island", "duplicate rate"])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for k, (name, g) in enumerate(shares.groupby("operator", sort=True)):
        g = _thin(g)
        fig.add_trace(go.Scatter(x=g["evaluations"], y=g["weight"], mode="lines", line={"shape": "hv",
                                 "color": palette[k % len(palette)]}, name=str(name), legendgroup="operators",
                                 legendgrouptitle_text="operator", customdata=g["children"],
                                 hovertemplate=f"{name}: share %{{y:.1%}} (%{{customdata}} children)<extra></extra>"),
                      row=1, col=1)
    if shares.empty:
        fig.add_annotation(text="one operator", showarrow=False, xref="x domain", yref="y domain", x=0.5, y=0.5,
                           row=1, col=1)
    for k, (island, g) in enumerate(islands.groupby("island", sort=True)):
        g = _thin(g)
        fig.add_trace(go.Scatter(x=g["evaluations"], y=g["max_fitness"], mode="lines", name=f"island {island}",
                                 line={"color": palette[k % len(palette)], "dash": "dot"}, legendgroup="islands",
                                 legendgrouptitle_text="island",
                                 hovertemplate=f"island {island}: best %{{y:.6g}}<extra></extra>"), row=2, col=1)
    for kind, symbol in (("migrate", "triangle-right"), ("reset", "x")):
        e = events[events["kind"] == kind]
        if e.empty:
            continue
        top = islands.groupby("evaluations")["max_fitness"].max()
        y = [top.asof(v) if len(top) else None for v in e["evaluations"]]
        fig.add_trace(go.Scatter(x=e["evaluations"], y=y, mode="markers", marker={"symbol": symbol, "size": 8,
                                 "color": "#444"}, name=kind, legendgroup="events", legendgrouptitle_text="event",
                                 customdata=np.stack([e["source"].fillna(-1), e["target"], e["elites"]], axis=1),
                                 hovertemplate=f"{kind}: %{{customdata[0]}} -> island %{{customdata[1]}}, "
                                               f"%{{customdata[2]}} elites<extra></extra>"), row=2, col=1)
    if islands.empty:
        fig.add_annotation(text="no islands", showarrow=False, xref="x2 domain", yref="y2 domain", x=0.5, y=0.5,
                           row=2, col=1)
    for k, (name, g) in enumerate(dup.groupby("mutator", sort=True)):
        fig.add_trace(go.Scatter(x=g["window_start"], y=g["duplicate_rate"], mode="lines+markers",
                                 marker={"size": 4}, line={"color": palette[k % len(palette)]}, name=str(name),
                                 legendgroup="duplicates", legendgrouptitle_text="duplicates",
                                 customdata=g["duplicates"],
                                 hovertemplate=f"{name}: %{{y:.1%}} duplicates (%{{customdata}})<extra></extra>"),
                      row=3, col=1)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=3, col=1)
    fig.update_xaxes(title_text="evaluations", row=3, col=1)
    fig.update_layout(template=_TEMPLATE, height=760, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def throughput_figure(run: Run, *, window: int | None = None) -> go.Figure:
    """Evaluations per second over wall time, sandbox outcomes (totals and over evaluations), eval times."""
    t = run.throughput()
    o = run.outcomes(window=window)
    if o.empty:
        return _message("no evaluations yet")
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.14, horizontal_spacing=0.1,
                        subplot_titles=["evaluations per second", "outcomes (all evaluations)",
                                        "outcomes over evaluations (share per window)",
                                        "mean seconds per evaluation"])
    if not t.empty:
        wall, wall_title = _time_axis(t["wall_s"])
        fig.add_trace(go.Scatter(x=wall, y=t["evals_per_s"], mode="lines", line={"color": "#1f77b4"},
                                 name="evaluations/s", showlegend=False,
                                 hovertemplate="%{y:.3g} evaluations/s<extra></extra>"), row=1, col=1)
        fig.update_xaxes(title_text=wall_title, row=1, col=1)
    totals = o.groupby("status")["evaluations"].sum().sort_values(ascending=False)
    fig.add_trace(go.Bar(x=totals.index.tolist(), y=totals.values,
                         marker={"color": [_status_color(s) or "#999" for s in totals.index]},
                         text=[f"{v:,}" for v in totals.values], textposition="outside", showlegend=False,
                         hovertemplate="%{x}: %{y:,}<extra></extra>"), row=1, col=2)
    share = o.pivot_table(index="window_start", columns="status", values="evaluations", aggfunc="sum").fillna(0)
    share = share.div(share.sum(axis=1), axis=0)
    for status in totals.index:
        fig.add_trace(go.Scatter(x=share.index, y=share[status], mode="lines", stackgroup="outcomes",
                                 name=status, line={"width": 0.5, "color": _status_color(status)},
                                 hovertemplate=f"{status} %{{y:.1%}}<extra></extra>"), row=2, col=1)
    per = o.groupby("window_start").apply(
        lambda g: pd.Series({"run_s": np.average(g["run_s"], weights=g["evaluations"]),
                             "eval_s": np.average(g["eval_s"], weights=g["evaluations"])}),
        include_groups=False)
    fig.add_trace(go.Scatter(x=per.index, y=per["eval_s"], mode="lines", name="sandbox round trip",
                             line={"color": "#555"}), row=2, col=2)
    fig.add_trace(go.Scatter(x=per.index, y=per["run_s"], mode="lines", name="running the program",
                             line={"color": "#1f77b4", "dash": "dot"}), row=2, col=2)
    fig.update_yaxes(tickformat=".0%", range=[0, 1], row=2, col=1)
    fig.update_xaxes(title_text="evaluations (window start)", row=2)
    fig.update_layout(template=_TEMPLATE, height=640, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def compare_figure(runs: Sequence[Run], *, metric: str = "qd_score", x: str = "evaluations",
                   labels: Sequence[str] | None = None) -> go.Figure:
    """One curve per run of ``metric`` (a key of :data:`METRICS`) over ``x`` (``evaluations`` or ``wall_s``)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    if x not in ("evaluations", "wall_s"):
        raise ValueError(f"x must be 'evaluations' or 'wall_s', got {x!r}")
    labels = list(labels) if labels is not None else [r.label for r in runs]
    frames = [(label, _thin(run.metrics())) for label, run in zip(labels, runs)]
    frames = [(label, m) for label, m in frames if not m.empty]
    if not frames:
        return _message("no metrics recorded yet")
    xtitle = "evaluations"
    if x == "wall_s":
        span = max(float(m["wall_s"].max()) for _, m in frames)
        div, xtitle = (3600.0, "wall time (h)") if span >= 3 * 3600 else (60.0, "wall time (min)") \
            if span >= 180 else (1.0, "wall time (s)")
    fig = go.Figure()
    for label, m in frames:
        xs = m["evaluations"] if x == "evaluations" else m["wall_s"] / div
        fig.add_trace(go.Scatter(x=xs, y=m[metric], mode="lines", name=label,
                                 hovertemplate=f"{label}: %{{y:.6g}}<extra></extra>"))
    fig.update_layout(template=_TEMPLATE, height=520, xaxis_title=xtitle, yaxis_title=METRICS[metric],
                      title={"text": f"{METRICS[metric]} of {len(frames)} run(s)", "x": 0.01},
                      legend={"title": {"text": "run"}}, hovermode="x unified",
                      margin={"l": 70, "r": 20, "t": 60, "b": 50})
    if metric == "coverage":
        fig.update_yaxes(tickformat=".0%")
    return fig


def summary_rows(runs: Sequence[Run], labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One dict per run for comparison tables: label, environment, mutator, seed and final figures."""
    labels = list(labels) if labels is not None else [r.label for r in runs]
    rows = []
    for label, run in zip(labels, runs):
        s = run.summary()
        rows.append({
            "run": label, "environment": s["environment"], "mutator": s["mutator"], "seed": s["seed"],
            "evaluations": s["evaluations"], "elites": s["num_elites"], "coverage": f"{100 * s['coverage']:.1f} %",
            "QD score": f"{s['qd_score']:.4g}",
            "best fitness": "—" if s["max_fitness"] is None else f"{s['max_fitness']:.6g}",
            "wall time": f"{s['wall_s']:.0f} s", "state": s["state"],
        })
    return rows


def mutator_totals_shown(run: Run) -> tuple[pd.DataFrame, bool]:
    """The mutator table's rows: per mutator, or per mutator and model version when a mutator's
    children were written by more than one set of weights (in-run fine-tuning, or a resume with an
    adapter); and whether they are per version."""
    versions = run.mutator_totals(by_version=True)
    if versions.groupby("mutator")["model_version"].nunique().gt(1).any():
        return versions, True
    return run.mutator_totals(), False


def finetune_rows(rounds: pd.DataFrame) -> list[dict[str, Any]]:
    """The in-run fine-tuning rounds (:meth:`elm.analysis.Run.finetune_rounds`) as table rows."""
    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""  # NULL arrives as None or NaN

    return [{"round": int(r.round), "lane": r.lane, "status": r.status, "version": text(r.version),
             "at evaluation": int(r.evaluations), "pairs": "" if pd.isna(r.examples) else int(r.examples),
             "steps": "" if pd.isna(r.steps) else int(r.steps),
             "seconds": "" if pd.isna(r.seconds) else f"{r.seconds:.1f}", "error": text(r.error)[:160]}
            for r in rounds.itertuples()]
