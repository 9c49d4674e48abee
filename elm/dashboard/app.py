"""The Dash app: live views over one or more run stores.

Tabs: Archive (heatmap of the real grid, 3-D slices, CVT Voronoi; click a cell for its
elite's code, fitness, descriptor, lineage and diff), Progress, Mutators, Throughput &
outcomes, Compare runs, Config. A ``dcc.Interval`` polls each store's cheap
:meth:`~elm.analysis.Run.version`; views recompute only when it changed, and only the
visible tab does any work.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dash import Dash, Input, Output, State, callback_context, dcc, html, no_update

from elm.analysis import Run, find_runs, load_run
from elm.dashboard import figures

__all__ = ["create_app", "open_runs", "run_labels", "serve"]

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
_MONO = "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace"
_PRE = {"fontFamily": _MONO, "fontSize": "12.5px", "background": "#f7f7f7", "padding": "10px",
        "border": "1px solid #ddd", "borderRadius": "4px", "overflow": "auto", "maxHeight": "520px",
        "whiteSpace": "pre", "margin": "4px 0 12px 0"}
_CARD = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "12px 16px", "background": "white"}
_CTRL = {"display": "inline-block", "marginRight": "18px", "verticalAlign": "middle"}
_PAGE_CSS = (
    ".md-table table{border-collapse:collapse;font-size:13px;margin:6px 0 14px 0}"
    ".md-table th{text-align:left;padding:4px 10px;border-bottom:2px solid #ccc}"
    ".md-table td{padding:3px 10px;border-bottom:1px solid #eee}"
    ".md-table p{margin:0}"
)


def open_runs(paths: Sequence[str | os.PathLike]) -> list[Run]:
    """Open every run at ``paths`` (run directories, or sweep directories holding runs)."""
    dirs: list[Path] = []
    for p in paths:
        for d in find_runs(p):
            if d.resolve() not in {x.resolve() for x in dirs}:
                dirs.append(d)
    return [load_run(d) for d in dirs]


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Short unique labels: the directory name, with as many parent names as it takes to tell runs apart."""
    parts = [r.run_dir.resolve().parts for r in runs]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            return labels
        depth += 1


# ---------------------------------------------------------------------- small renderers


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def _table(rows: list[dict[str, Any]], *, id: str | None = None) -> dcc.Markdown:
    """A table as one Markdown component: a page of hundreds of html.Td components renders
    slowly in Dash (a 350-step lineage took 25 s), one Markdown table takes milliseconds."""
    ident = {} if id is None else {"id": id}
    if not rows:
        return dcc.Markdown("", **ident)

    def cell(v: Any) -> str:
        return _MD_SPECIAL.sub(r"\\\1", "" if v is None else str(v)).replace("\n", " ")

    lines = ["| " + " | ".join(cell(k) for k in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in rows]
    return dcc.Markdown("\n".join(lines), className="md-table", **ident)


def _diff_view(diff: str) -> html.Pre:
    """A unified diff with added / removed / hunk lines shaded; one span per run of alike lines
    (few components however long the diff)."""
    colours = {"+": "#e6ffec", "-": "#ffebe9", "@": "#ddf4ff"}
    runs: list[tuple[str | None, list[str]]] = []
    for line in diff.splitlines():
        bg = colours.get(line[:1]) if not line.startswith(("+++", "---")) else "#f0f0f0"
        if runs and runs[-1][0] == bg:
            runs[-1][1].append(line)
        else:
            runs.append((bg, [line]))
    spans = [html.Span("\n".join(lines) + "\n", style={"background": bg, "display": "block"} if bg else None)
             for bg, lines in runs]
    return html.Pre(spans or "(identical to its parent)", id="elite-diff", style=_PRE)


def _value(v: Any) -> Any:
    """None for pandas' missing values (NaN, NA, None), else the value."""
    return None if v is None or (not isinstance(v, str) and bool(pd.isna(v))) else v


def _fmt(v: Any, digits: int = 6) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _cell_bounds(geometry: dict, cell: int) -> str:
    names = geometry["space"]["names"]
    if geometry["kind"] == "grid":
        bins = geometry["bins"]
        lo, hi = geometry.get("lower", geometry["space"]["lower"]), geometry.get("upper", geometry["space"]["upper"])
        idx = np.unravel_index(cell, bins)
        parts = []
        for n, i, a, b, k in zip(names, idx, lo, hi, bins):
            w = (b - a) / k
            parts.append(f"{n} ∈ [{a + i * w:.4g}, {a + (i + 1) * w:.4g}]")
        return ", ".join(parts)
    centroid = geometry["centroids"][cell]
    return "centroid " + ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, centroid))


# ---------------------------------------------------------------------- layout


def _layout(runs: list[Run], labels: list[str], refresh_s: float):
    def layout():
        versions = [list(r.version()) for r in runs]
        return html.Div([
            html.Div([
                html.H2("ELM run dashboard", style={"margin": "0 24px 0 0", "display": "inline-block",
                                                    "verticalAlign": "middle"}),
                html.Div(dcc.Dropdown(id="run", options=[{"label": name, "value": i} for i, name in enumerate(labels)],
                                      value=0, clearable=False, style={"width": "340px"}), style=_CTRL),
                html.Span(id="run-status", style={"fontSize": "14px", "color": "#333", "verticalAlign": "middle"}),
            ], style={"padding": "10px 16px", "borderBottom": "1px solid #ddd", "background": "#fafafa"}),
            dcc.Tabs(id="tabs", value="archive", children=[
                dcc.Tab(label="Archive", value="archive", children=_archive_tab()),
                dcc.Tab(label="Progress", value="progress", children=[
                    dcc.Loading(dcc.Graph(id="progress-graph", config={"displaylogo": False}))]),
                dcc.Tab(label="Mutators", value="mutators", children=[
                    dcc.Loading(dcc.Graph(id="mutator-graph", config={"displaylogo": False})),
                    html.H4("Whole run", style={"margin": "4px 16px"}),
                    html.Div(id="mutator-table", style={"margin": "0 16px"})]),
                dcc.Tab(label="Search", value="search", children=[
                    dcc.Loading(dcc.Graph(id="search-graph", config={"displaylogo": False})),
                    html.H4("Island events", style={"margin": "4px 16px"}),
                    html.Div(id="island-table", style={"margin": "0 16px"})]),
                dcc.Tab(label="Throughput & outcomes", value="throughput", children=[
                    dcc.Loading(dcc.Graph(id="throughput-graph", config={"displaylogo": False})),
                    html.H4("Sessions", style={"margin": "4px 16px"}),
                    html.Div(id="sessions-table", style={"margin": "0 16px"})]),
                dcc.Tab(label="Compare runs", value="compare", children=[
                    html.Div([
                        html.Div([html.Label("metric "), dcc.Dropdown(
                            id="compare-metric", value="qd_score", clearable=False, style={"width": "220px"},
                            options=[{"label": v, "value": k} for k, v in figures.METRICS.items()])], style=_CTRL),
                        html.Div(dcc.RadioItems(id="compare-x", value="evaluations", inline=True, options=[
                            {"label": " over evaluations ", "value": "evaluations"},
                            {"label": " over wall time", "value": "wall_s"}]), style=_CTRL),
                    ], style={"padding": "10px 16px"}),
                    dcc.Loading(dcc.Graph(id="compare-graph", config={"displaylogo": False})),
                    html.Div(id="compare-table", style={"margin": "0 16px"})]),
                dcc.Tab(label="Config", value="config", children=[
                    html.Div(id="config-panel", style={"padding": "10px 16px"})]),
            ]),
            dcc.Interval(id="refresh", interval=int(refresh_s * 1000), disabled=refresh_s <= 0),
            dcc.Store(id="versions", data=versions),
            dcc.Store(id="selected", data=None),
        ], style={"fontFamily": _FONT})

    return layout


def _archive_tab() -> list:
    return [
        html.Div(id="archive-controls", children=[
            html.Div([html.Label("slice along "), dcc.Dropdown(id="slice-dim", clearable=False,
                                                               style={"width": "180px"})],
                     id="slice-dim-box", style=_CTRL),
            html.Div([html.Label("show "), dcc.Dropdown(id="slice-index", clearable=False,
                                                        style={"width": "220px"})],
                     id="slice-index-box", style=_CTRL),
            html.Div([html.Label("x "), dcc.Dropdown(id="axis-x", clearable=False, style={"width": "180px"})],
                     id="axis-x-box", style=_CTRL),
            html.Div([html.Label("y "), dcc.Dropdown(id="axis-y", clearable=False, style={"width": "180px"})],
                     id="axis-y-box", style=_CTRL),
        ], style={"padding": "8px 16px", "display": "none"}),
        html.Div([
            html.Div(dcc.Graph(id="archive-graph", config={"displaylogo": False}, style={"height": "640px"}),
                     style={"flex": "1 1 0", "minWidth": "480px"}),
            html.Div(id="elite-panel", children=[
                html.Div(id="elite-summary"),
                html.Div([html.Label("show the code of "), dcc.Dropdown(id="lineage-pick", clearable=False,
                                                                       style={"width": "100%"})],
                         style={"margin": "8px 0"}),
                html.Div(id="shown-header", style={"fontWeight": "600", "marginTop": "6px"}),
                html.Pre(id="elite-code", style=_PRE),
                html.Div("Diff against its parent", style={"fontWeight": "600"}),
                html.Div(id="elite-diff-box"),
                html.Div("Lineage (first parent at each step, back to a seed)", style={"fontWeight": "600"}),
                html.Div(id="elite-lineage"),
            ], style={**_CARD, "flex": "0 0 42%", "minWidth": "380px", "boxSizing": "border-box",
                      "margin": "8px 16px 8px 0", "overflow": "auto", "maxHeight": "1400px"}),
        ], style={"display": "flex", "flexWrap": "wrap", "alignItems": "flex-start"}),
    ]


# ---------------------------------------------------------------------- the app


def create_app(runs: Sequence[Run], *, refresh_s: float = 5.0, title: str = "ELM dashboard") -> Dash:
    """A Dash app over already opened runs (see :func:`open_runs`); ``refresh_s <= 0`` disables polling."""
    runs = list(runs)
    if not runs:
        raise ValueError("create_app needs at least one run; open them with open_runs([...run dirs])")
    labels = run_labels(runs)
    for run, label in zip(runs, labels):
        run.label = label
    app = Dash(__name__, title=title, update_title=None, suppress_callback_exceptions=True)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + _PAGE_CSS + "</style>")
    app.layout = _layout(runs, labels, refresh_s)

    def pick(i: Any) -> Run:
        try:
            return runs[int(i or 0)]
        except (IndexError, TypeError, ValueError):
            return runs[0]

    @app.callback(Output("versions", "data"), Input("refresh", "n_intervals"), State("versions", "data"))
    def poll(_n, current):
        latest = [list(r.version()) for r in runs]
        return no_update if latest == current else latest

    @app.callback(Output("run-status", "children"), Input("versions", "data"), Input("run", "value"))
    def status(_v, i):
        s = pick(i).summary()
        best = "—" if s["max_fitness"] is None else f"{s['max_fitness']:.6g}"
        return (f"{s['evaluations']:,} evaluations · {s['num_elites']} / {s['cells']} cells "
                f"({100 * s['coverage']:.1f} %) · QD score {s['qd_score']:.5g} · best {best} · {s['state']}")

    # ---- archive
    @app.callback(
        Output("archive-controls", "style"),
        Output("slice-dim-box", "style"), Output("slice-dim", "options"), Output("slice-dim", "value"),
        Output("axis-x-box", "style"), Output("axis-y-box", "style"),
        Output("axis-x", "options"), Output("axis-x", "value"), Output("axis-y", "options"), Output("axis-y", "value"),
        Input("run", "value"))
    def archive_controls(i):
        g = pick(i).geometry()
        names = list(g["space"]["names"])
        opts = [{"label": n, "value": k} for k, n in enumerate(names)]
        hidden, shown = {**_CTRL, "display": "none"}, _CTRL
        grid3 = g["kind"] == "grid" and len(names) == 3
        projected = (g["kind"] == "grid" and len(names) > 3) or (g["kind"] == "cvt" and len(names) != 2)
        box = {"padding": "8px 16px", "display": "block" if grid3 or projected else "none"}
        return (box, shown if grid3 else hidden, opts, 2 if grid3 else None,
                shown if projected else hidden, shown if projected else hidden,
                opts, 0, opts, 1 if len(names) > 1 else 0)

    @app.callback(Output("slice-index-box", "style"), Output("slice-index", "options"), Output("slice-index", "value"),
                  Input("slice-dim", "value"), State("run", "value"))
    def slice_options(dim, i):
        g = pick(i).geometry()
        if dim is None or g["kind"] != "grid" or len(g["bins"]) != 3:
            return {**_CTRL, "display": "none"}, [], "all"
        n, lo, hi = g["bins"][dim], g["lower"][dim], g["upper"][dim]
        w = (hi - lo) / n
        opts = [{"label": f"all {n} slices", "value": "all"}] + [
            {"label": f"slice {k}: [{lo + k * w:.3g}, {lo + (k + 1) * w:.3g}]", "value": k} for k in range(n)]
        return _CTRL, opts, "all"

    @app.callback(Output("selected", "data"), Input("archive-graph", "clickData"), Input("run", "value"),
                  prevent_initial_call=True)
    def select(click, i):
        if callback_context.triggered_id == "run" or not click or not click.get("points"):
            return None
        data = click["points"][0].get("customdata")
        if isinstance(data, list):
            data = data[0]
        return None if data is None else {"run": int(i or 0), "cell": int(data)}

    @app.callback(Output("archive-graph", "figure"),
                  Input("versions", "data"), Input("run", "value"), Input("tabs", "value"),
                  Input("slice-dim", "value"), Input("slice-index", "value"),
                  Input("axis-x", "value"), Input("axis-y", "value"), Input("selected", "data"))
    def archive(_v, i, tab, sdim, sindex, ax, ay, selected):
        if tab != "archive":
            return no_update
        run = pick(i)
        cell = selected["cell"] if selected and selected.get("run") == int(i or 0) else None
        g = run.geometry()
        if g["kind"] == "grid" and len(g["bins"]) == 3:
            sdim = 2 if sdim is None else int(sdim)
            sindex = None if sindex in (None, "all") or int(sindex) >= g["bins"][sdim] else int(sindex)
        else:
            sdim = sindex = None
        return figures.archive_figure(run, slice_dim=sdim, slice_index=sindex, selected=cell,
                                      axes=(ax or 0, 1 if ay is None else ay), height=640)

    @app.callback(Output("elite-summary", "children"), Output("elite-lineage", "children"),
                  Output("lineage-pick", "options"), Output("lineage-pick", "value"),
                  Input("selected", "data"), Input("versions", "data"), Input("run", "value"),
                  State("lineage-pick", "options"))
    def elite_panel(selected, _v, i, shown_options):
        run = pick(i)
        cells = run.cell_fitness()
        if not cells:
            return html.P("The archive is empty so far."), None, [], None
        chosen = selected["cell"] if selected and selected.get("run") == int(i or 0) else None
        note = None
        if chosen is None:
            chosen = max(cells, key=lambda c: (cells[c][0], -cells[c][1]))
            note = "the best elite; click a cell to see another"
        elif chosen not in cells:
            g = run.geometry()
            return (html.Div([html.H4(f"Cell {chosen} is empty", style={"margin": "0 0 6px 0"}),
                              html.Div(_cell_bounds(g, chosen), style={"fontSize": "13px"})]), None, [], None)
        elite = run.elite(chosen)
        g = run.geometry()
        names = g["space"]["names"]
        desc = elite["descriptor"] or []
        facts = [
            ("fitness", _fmt(elite["fitness"], 10)),
            ("descriptor", ", ".join(f"{n} = {v:.5g}" for n, v in zip(names, desc))),
            ("cell", f"{chosen} ({_cell_bounds(g, chosen)})"),
            ("mutator", f"{elite['mutator']} · generation {elite['generation']}"),
            ("parents", ", ".join(f"#{p}" for p in elite["parent_ids"]) or "none (a seed program)"),
        ]
        summary = html.Div([
            html.H4([f"Elite #{elite['id']}", html.Span(f"  ({note})" if note else "",
                                                         style={"fontWeight": "normal", "color": "#777",
                                                                "fontSize": "13px"})],
                    id="elite-title", style={"margin": "0 0 6px 0"}),
            html.Table([html.Tr([html.Td(k, style={"color": "#555", "paddingRight": "12px", "verticalAlign": "top"}),
                                 html.Td(v, id=f"elite-{k}")]) for k, v in facts], style={"fontSize": "13px"}),
        ])
        lineage = run.lineage(elite["id"])
        options = [{"label": f"#{r.id} · gen {r.generation} · {r.mutator} · fitness {_fmt(_value(r.fitness))}"
                             + ("  (this elite)" if r.id == elite["id"] else ""), "value": int(r.id)}
                   for r in lineage.itertuples()][::-1]
        if callback_context.triggered_id == "versions" and options == shown_options:
            return no_update, no_update, no_update, no_update  # same elite: keep the ancestor being read
        rows = [{"id": f"#{r.id}", "gen": r.generation, "mutator": r.mutator, "status": r.status,
                 "fitness": _fmt(_value(r.fitness)), "cell": "" if _value(r.cell) is None else int(r.cell),
                 "archive": _value(r.archive_status) or "", "change": r.edits}
                for r in lineage.itertuples()]
        return summary, _table(rows, id="lineage-table"), options, int(elite["id"])

    @app.callback(Output("shown-header", "children"), Output("elite-code", "children"),
                  Output("elite-diff-box", "children"),
                  Input("lineage-pick", "value"), State("run", "value"))
    def shown_code(eid, i):
        if eid is None:
            return None, "", None
        run = pick(i)
        try:
            rec = run.evaluation(eid)
        except LookupError as exc:
            return str(exc), "", None
        header = f"Code of #{rec['id']} ({rec['mutator']}, generation {rec['generation']}, {rec['status']})"
        return header, rec["source"] or "(no program: the mutator produced none)", \
            _diff_view(run.diff_to_parent(eid)) if rec["parent_ids"] else html.Pre(
                "(a seed program: no parent)", id="elite-diff", style=_PRE)

    # ---- other tabs
    @app.callback(Output("progress-graph", "figure"),
                  Input("versions", "data"), Input("run", "value"), Input("tabs", "value"))
    def progress(_v, i, tab):
        return figures.progress_figure(pick(i)) if tab == "progress" else no_update

    @app.callback(Output("mutator-graph", "figure"), Output("mutator-table", "children"),
                  Input("versions", "data"), Input("run", "value"), Input("tabs", "value"))
    def mutators(_v, i, tab):
        if tab != "mutators":
            return no_update, no_update
        run = pick(i)
        totals, tuned = figures.mutator_totals_shown(run)
        rows = [{"mutator": r.mutator, **({"model": r.model_version or ""} if tuned else {}),
                 "children": f"{r.evaluations:,}", "valid": f"{100 * r.valid_rate:.1f} %",
                 "inserted": f"{100 * r.insertion_rate:.1f} %", "new cells": f"{r.new_cells:,}",
                 "new-cell rate": f"{100 * r.new_cell_rate:.2f} %", "tokens": f"{int(r.tokens):,}",
                 "duplicates": f"{r.duplicates:,}", "model s/child": f"{r.model_s:.3g}"} for r in totals.itertuples()]
        rounds = run.finetune_rounds()
        if rounds.empty:
            return figures.mutator_figure(run), _table(rows)
        return figures.mutator_figure(run), [_table(rows), html.H4("In-run fine-tuning rounds"),
                                             _table(figures.finetune_rows(rounds))]

    @app.callback(Output("search-graph", "figure"), Output("island-table", "children"),
                  Input("versions", "data"), Input("run", "value"), Input("tabs", "value"))
    def search(_v, i, tab):
        if tab != "search":
            return no_update, no_update
        run = pick(i)
        events = run.island_events()
        if events.empty:
            return figures.search_figure(run), html.P("none (one archive, or no migration or reset yet)")
        rows = [{"evaluations": f"{r.evaluations:,}", "event": r.kind,
                 "from": "" if pd.isna(r.source) else int(r.source), "to island": int(r.target),
                 "elites": int(r.elites)} for r in events.tail(200).itertuples()]
        return figures.search_figure(run), _table(rows)

    @app.callback(Output("throughput-graph", "figure"), Output("sessions-table", "children"),
                  Input("versions", "data"), Input("run", "value"), Input("tabs", "value"))
    def throughput(_v, i, tab):
        if tab != "throughput":
            return no_update, no_update
        run = pick(i)
        rows = [{"session": int(s.id),
                 "started": dt.datetime.fromtimestamp(s.started_at).strftime("%Y-%m-%d %H:%M:%S"),
                 "elapsed": f"{s.elapsed_s:.0f} s", "evaluations at start": int(s.evaluations_at_start),
                 "end": s.end_reason if isinstance(s.end_reason, str) else "(running or crashed)",
                 "host": f"{s.host}:{s.pid}"} for s in run.sessions().itertuples()]
        return figures.throughput_figure(run), _table(rows)

    @app.callback(Output("compare-graph", "figure"), Output("compare-table", "children"),
                  Input("versions", "data"), Input("tabs", "value"), Input("compare-metric", "value"),
                  Input("compare-x", "value"))
    def compare(_v, tab, metric, x):
        if tab != "compare":
            return no_update, no_update
        note = [] if len(runs) > 1 else [html.P("Only one run is open: pass several run directories "
                                                "(or a sweep directory) to compare them.")]
        return (figures.compare_figure(runs, metric=metric, x=x, labels=labels),
                html.Div(note + [_table(figures.summary_rows(runs, labels), id="compare-summary")]))

    @app.callback(Output("config-panel", "children"), Input("run", "value"), Input("tabs", "value"))
    def config(i, tab):
        if tab != "config":
            return no_update
        run = pick(i)
        meta = run.meta()
        from omegaconf import OmegaConf

        cfg_text = OmegaConf.to_yaml(OmegaConf.create(run.config())) if run.config() else "(no config stored)"
        geometry = {k: v for k, v in run.geometry().items() if k != "centroids"}
        facts = [("run directory", str(run.run_dir)), ("environment", meta.get("environment")),
                 ("seed", meta.get("seed")), ("sandbox backend", meta.get("sandbox_backend")),
                 ("archive", json.dumps(geometry)), ("versions", json.dumps(meta.get("versions")))]
        return [
            html.Table([html.Tr([html.Td(k, style={"color": "#555", "paddingRight": "14px"}),
                                 html.Td(_fmt(v), style={"fontFamily": _MONO, "fontSize": "12px"})])
                        for k, v in facts], style={"fontSize": "13px", "marginBottom": "10px"}),
            html.H4("Resolved config", style={"margin": "6px 0"}),
            html.Pre(cfg_text, id="config-yaml", style={**_PRE, "maxHeight": "none"}),
        ]

    return app


def serve(runs: Sequence[Run], *, host: str = "127.0.0.1", port: int = 8050, refresh_s: float = 5.0,
          ready: threading.Event | None = None, announce=print) -> None:
    """Serve the dashboard until interrupted (Ctrl-C). ``port=0`` picks a free port.

    The URL is announced (printed) once the socket listens; ``ready`` is set then too.
    """
    from werkzeug.serving import make_server

    app = create_app(runs, refresh_s=refresh_s)
    for run in runs:  # warm the aggregates so the first page is quick
        run.summary()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    if port:  # werkzeug exits the process on a taken port; raise OSError instead
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    server = make_server(host, port, app.server, threaded=True)
    shown = f"[{host}]" if ":" in host else host
    announce(f"ELM dashboard: http://{shown}:{server.server_port}/  ({len(runs)} run(s); Ctrl-C stops it)")
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    finally:
        server.server_close()
