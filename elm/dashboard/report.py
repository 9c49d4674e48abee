"""Static export: one self-contained HTML report and PNG figures for papers.

``python -m elm.dashboard <run dir> [<run dir> ...] --export <dir>`` writes

- ``report.html``: the dashboard's Plotly figures (interactive, plotly.js inlined once, so
  the file opens offline and can be mailed), each run's summary, best elites, the best
  program, per-mutator totals and resolved config, and the comparison of all runs;
- PNG figures drawn with matplotlib (no browser needed; 200 dpi, sized for a paper
  column): ``<run>_archive.png``, ``<run>_progress.png``, ``<run>_mutators.png``,
  ``<run>_outcomes.png`` per run and ``compare.png`` for several runs.

Why matplotlib for the PNGs: Plotly's own image export (kaleido 1.x) drives a Chrome
or Chromium at export time. Debian's ``chromium`` works for it, but a browser would
then be a runtime dependency of writing a figure, with a browser start-up per export;
matplotlib writes the same data as print-quality figures with no browser at all.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from elm.analysis import Run
from elm.dashboard import figures
from elm.types import SEED_MUTATOR

__all__ = ["export_report", "write_pngs"]

_DPI = 200


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_") or "run"


def export_report(runs: Sequence[Run], *, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``report.html`` and the PNG figures of ``runs`` into ``out_dir``; returns the paths written."""
    from elm.dashboard.app import run_labels

    runs = list(runs)
    if not runs:
        raise ValueError("export_report needs at least one run")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = run_labels(runs)
    for run, label in zip(runs, labels):
        run.label = label
    written = [_write_html(runs, labels, out / "report.html")]
    written += write_pngs(runs, out_dir=out)
    return written


# ---------------------------------------------------------------------- HTML


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1250px;color:#222}
h1{margin-bottom:4px} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:40px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 16px 0}
th{text-align:left;border-bottom:2px solid #ccc;padding:4px 10px} td{padding:3px 10px;border-bottom:1px solid #eee}
pre{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,monospace;font-size:12.5px;background:#f7f7f7;
    border:1px solid #ddd;border-radius:4px;padding:10px;overflow:auto;max-height:600px}
.muted{color:#777}
"""


def _html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r.values())
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _write_html(runs: list[Run], labels: list[str], path: Path) -> Path:
    from omegaconf import OmegaConf

    parts: list[str] = []
    first = [True]

    def fig_html(fig) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=first[0], config={"displaylogo": False})
        first[0] = False
        return out

    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(f"<h1>ELM run report</h1><p class='muted'>{len(runs)} run(s), written {now}</p>")
    parts.append(_html_table(figures.summary_rows(runs, labels)))
    if len(runs) > 1:
        parts.append("<h2>Comparison</h2>")
        for metric in ("qd_score", "coverage", "max_fitness"):
            parts.append(fig_html(figures.compare_figure(runs, metric=metric, labels=labels)))
    for run, label in zip(runs, labels):
        parts.append(f"<h2>Run {html.escape(label)}</h2><p class='muted'>{html.escape(str(run.run_dir))}</p>")
        parts.append(fig_html(figures.archive_figure(run, height=620)))
        elites = run.elites().sort_values("fitness", ascending=False)
        names = list(run.descriptor_names)
        top = [{"cell": int(r["cell"]), "id": int(r["id"]), "fitness": f"{r['fitness']:.8g}",
                **{n: f"{r[n]:.4g}" for n in names if n in r}, "mutator": r["mutator"],
                "generation": int(r["generation"])} for _, r in elites.head(10).iterrows()]
        parts.append("<h3>Best elites</h3>" + _html_table(top))
        if len(elites):
            best = run.evaluation(int(elites.iloc[0]["id"]))
            lineage = run.lineage(best["id"])
            parts.append(f"<h3>Best program (#{best['id']}, fitness {best['fitness']:.10g}, "
                         f"{len(lineage) - 1} generations from seed #{int(lineage.iloc[0]['id'])})</h3>"
                         f"<pre>{html.escape(best['source'] or '')}</pre>")
        parts.append("<h3>Progress</h3>" + fig_html(figures.progress_figure(run)))
        parts.append("<h3>Mutators</h3>" + fig_html(figures.mutator_figure(run)))
        totals, tuned = figures.mutator_totals_shown(run)
        parts.append(_html_table([{"mutator": r.mutator, **({"model": r.model_version or ""} if tuned else {}),
                                   "children": r.evaluations, "valid": f"{100 * r.valid_rate:.1f} %",
                                   "inserted": f"{100 * r.insertion_rate:.1f} %", "new cells": r.new_cells,
                                   "duplicates": r.duplicates, "tokens": int(r.tokens)}
                                  for r in totals.itertuples()]))
        rounds = run.finetune_rounds()
        if not rounds.empty:
            parts.append("<h3>In-run fine-tuning rounds</h3>" + _html_table(figures.finetune_rows(rounds)))
        if not (run.operator_shares().empty and run.island_stats().empty):
            parts.append("<h3>Search: operator shares, islands, duplicates</h3>" + fig_html(figures.search_figure(run)))
        parts.append("<h3>Throughput and outcomes</h3>" + fig_html(figures.throughput_figure(run)))
        cfg = run.config()
        parts.append("<h3>Resolved config</h3><pre>"
                     + html.escape(OmegaConf.to_yaml(OmegaConf.create(cfg)) if cfg else "(none stored)")
                     + "</pre>")
        versions = run.meta().get("versions")
        if versions:
            parts.append(f"<p class='muted'>versions: {html.escape(json.dumps(versions))}</p>")
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ELM run report</title>"
           f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------- PNG (matplotlib)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI)
    return path


def write_pngs(runs: Sequence[Run], *, out_dir: str | os.PathLike) -> list[Path]:
    """Paper figures of ``runs`` as PNG files in ``out_dir`` (see the module docstring)."""
    import matplotlib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with matplotlib.rc_context({"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
                                "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
                                "axes.spines.top": False, "axes.spines.right": False}):
        for run in runs:
            slug = _slug(run.label)
            written.append(_save(_archive_png(run), out / f"{slug}_archive.png"))
            written.append(_save(_progress_png(run), out / f"{slug}_progress.png"))
            written.append(_save(_mutators_png(run), out / f"{slug}_mutators.png"))
            written.append(_save(_outcomes_png(run), out / f"{slug}_outcomes.png"))
        if len(runs) > 1:
            written.append(_save(_compare_png(runs), out / "compare.png"))
    return written


def _archive_png(run: Run):
    import matplotlib as mpl

    g = run.geometry()
    names = list(g["space"]["names"])
    cells = int(g["cells"])
    fitness = np.full(cells, np.nan)
    for cell, (fit, _) in run.cell_fitness().items():
        if 0 <= cell < cells:
            fitness[cell] = fit
    finite = fitness[np.isfinite(fitness)]
    norm = mpl.colors.Normalize(*(finite.min(), finite.max()) if finite.size else (0, 1))
    cmap = mpl.colormaps["viridis"].with_extremes(bad="#e5e5e5")
    lower = [float(v) for v in g.get("lower", g["space"]["lower"])]
    upper = [float(v) for v in g.get("upper", g["space"]["upper"])]
    title = f"{g['kind']} archive: {int(np.isfinite(fitness).sum())} / {cells} cells"
    if g["kind"] == "grid" and len(g["bins"]) <= 2:
        bins = list(g["bins"]) + ([1] if len(g["bins"]) == 1 else [])
        lo, hi = lower + ([0.0] if len(lower) == 1 else []), upper + ([1.0] if len(upper) == 1 else [])
        fig = _figure(3.6, 3.2)
        ax = fig.add_subplot()
        edges = [np.linspace(a, b, n + 1) for a, b, n in zip(lo, hi, bins)]
        mesh = ax.pcolormesh(edges[0], edges[1], np.ma.masked_invalid(fitness.reshape(bins).T), cmap=cmap,
                             norm=norm, edgecolors="white", linewidth=0.3)
        ax.set_facecolor("#e5e5e5")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1] if len(names) > 1 else "")
        ax.set_aspect((hi[0] - lo[0]) / (hi[1] - lo[1]))
        ax.set_title(title)
        fig.colorbar(mesh, ax=ax, label="fitness", shrink=0.85)
        return fig
    if g["kind"] == "grid" and len(g["bins"]) == 3:
        bins = list(g["bins"])
        n = bins[2]
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        fig = _figure(1.6 * cols + 0.8, 1.6 * rows + 0.4)
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
        edges = [np.linspace(a, b, k + 1) for a, b, k in zip(lower, upper, bins)]
        grid = fitness.reshape(bins)
        mesh = None
        for k, ax in enumerate(axes.ravel()):
            if k >= n:
                ax.set_visible(False)
                continue
            mesh = ax.pcolormesh(edges[0], edges[1], np.ma.masked_invalid(grid[:, :, k].T), cmap=cmap, norm=norm)
            ax.set_facecolor("#e5e5e5")
            ax.set_title(f"{names[2]} ∈ [{edges[2][k]:.3g}, {edges[2][k + 1]:.3g}]", fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel(names[0])
        for ax in axes[:, 0]:
            ax.set_ylabel(names[1])
        fig.suptitle(title)
        fig.colorbar(mesh, ax=axes, label="fitness", shrink=0.8)
        return fig
    fig = _figure(3.6, 3.2)
    ax = fig.add_subplot()
    ax.set_title(title)
    if g["kind"] == "cvt" and len(names) == 2:
        centroids = np.asarray(g["centroids"], dtype=np.float64)
        labels = figures.voronoi_labels(centroids, lower, upper, resolution=400)
        img = ax.imshow(np.ma.masked_invalid(fitness[labels]), origin="lower", cmap=cmap, norm=norm,
                        extent=(lower[0], upper[0], lower[1], upper[1]), interpolation="nearest")
        ax.scatter(centroids[:, 0], centroids[:, 1], s=0.6, c="black", linewidths=0)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        fig.colorbar(img, ax=ax, label="fitness", shrink=0.85)
        return fig
    if g["kind"] == "cvt":
        points = np.asarray(g["centroids"], dtype=np.float64)
    else:
        bins = list(g["bins"])
        edges = [np.linspace(a, b, k + 1) for a, b, k in zip(lower, upper, bins)]
        idx = np.array(np.unravel_index(np.arange(cells), bins))
        points = np.stack([(e[i] + e[i + 1]) / 2 for e, i in zip(edges, idx)], axis=1)
    occ = np.isfinite(fitness)
    ax.scatter(points[~occ, 0], points[~occ, 1], s=3, c="#c8c8c8", linewidths=0)
    sc = ax.scatter(points[occ, 0], points[occ, 1], s=6, c=fitness[occ], cmap=cmap, norm=norm, linewidths=0)
    ax.set_xlabel(f"{names[0]} (projected)")
    ax.set_ylabel(names[1])
    fig.colorbar(sc, ax=ax, label="fitness", shrink=0.85)
    return fig


def _progress_png(run: Run):
    m = run.metrics()
    fig = _figure(7.0, 2.3)
    axes = fig.subplots(1, 3)
    for ax, (col, title) in zip(axes, (("qd_score", "QD score"), ("coverage", "coverage"),
                                       ("max_fitness", "best fitness"))):
        if not m.empty:
            ax.plot(m["evaluations"], m[col], color="#1f77b4", lw=1.3)
        ax.set_title(title)
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
    if not m.empty:
        axes[2].plot(m["evaluations"], m["mean_fitness"], color="#999", lw=1, ls=":", label="mean elite")
        axes[2].legend(frameon=False)
        axes[1].yaxis.set_major_formatter(_percent())
    return fig


def _percent():
    """Fractions as percentages with the fewest decimals that write every tick exactly.

    A fixed number of decimals repeats labels on a narrow range (ticks 0.010, 0.015, 0.020 with
    no decimals read 1%, 2%, 2%) or clutters a wide one; the tick values are known when they are
    labelled, so the decimals follow them (at most 4).
    """
    from matplotlib.ticker import Formatter

    class _Percent(Formatter):
        decimals = 0

        def __call__(self, x, pos=None):
            return f"{x * 100:.{self.decimals}f}%"

        def format_ticks(self, values):
            self.decimals = percent_decimals(values)
            return [self(v) for v in values]

    return _Percent()


def percent_decimals(values: Sequence[float], *, most: int = 4) -> int:
    """The fewest decimals (0..``most``) that write every fraction in ``values`` as an exact percentage."""
    for decimals in range(most + 1):
        if all(abs(round(v * 100, decimals) - v * 100) < 1e-9 * max(1.0, abs(v * 100)) for v in values):
            return decimals
    return most


def _mutators_png(run: Run):
    f = run.mutator_stats()
    f = f[f["mutator"] != SEED_MUTATOR]
    fig = _figure(7.0, 2.3)
    axes = fig.subplots(1, 4)
    panels = (("valid_rate", "valid rate"), ("insertion_rate", "insertion rate"),
              ("new_cell_rate", "new-cell rate"), ("tokens", "tokens / window"))
    for ax, (col, title) in zip(axes, panels):
        for name, g in f.groupby("mutator", sort=True):
            ax.plot(g["window_start"], g[col], lw=1.2, marker="o", ms=1.8, label=str(name))
        ax.set_title(title)
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
        if col != "tokens":
            ax.yaxis.set_major_formatter(_percent())
            ax.set_ylim(bottom=0)
    if not f.empty:
        axes[0].legend(frameon=False)
    return fig


def _outcomes_png(run: Run):
    o = run.outcomes()
    t = run.throughput()
    fig = _figure(7.0, 2.4)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    if not o.empty:
        totals = o.groupby("status")["evaluations"].sum().sort_values(ascending=False)
        ax1.bar(totals.index, totals.values, color=[figures.STATUS_COLORS.get(s, "#999") for s in totals.index])
        ax1.tick_params(axis="x", rotation=45)
        share = o.pivot_table(index="window_start", columns="status", values="evaluations",
                              aggfunc="sum").fillna(0)
        share = share.div(share.sum(axis=1), axis=0)[list(totals.index)]
        ax2.stackplot(share.index, share.T.values, labels=share.columns,
                      colors=[figures.STATUS_COLORS.get(s, "#999") for s in share.columns])
        ax2.yaxis.set_major_formatter(_percent())
        ax2.set_ylim(0, 1)
        ax2.legend(frameon=False, fontsize=6, loc="lower left")
    ax1.set_title("outcomes")
    ax2.set_title("outcome share")
    ax2.set_xlabel("evaluations")
    if not t.empty:
        ax3.plot(t["wall_s"], t["evals_per_s"], color="#1f77b4", lw=1.2)
    ax3.set_title("evaluations / s")
    ax3.set_xlabel("wall time (s)")
    ax3.grid(alpha=0.3)
    return fig


def _compare_png(runs: Sequence[Run]):
    fig = _figure(7.0, 2.4)
    axes = fig.subplots(1, 3)
    for run in runs:
        m = run.metrics()
        for ax, col in zip(axes, ("qd_score", "coverage", "max_fitness")):
            if not m.empty:
                ax.plot(m["evaluations"], m[col], lw=1.2, label=run.label)
    for ax, col in zip(axes, ("qd_score", "coverage", "max_fitness")):
        ax.set_title(figures.METRICS[col])
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
    axes[1].yaxis.set_major_formatter(_percent())
    axes[0].legend(frameon=False)
    return fig
