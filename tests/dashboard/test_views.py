"""The dashboard's views on every archive geometry, through the app's own HTTP callbacks (no browser),
the static export, and the command line."""

from __future__ import annotations

import base64
import socket
import struct

import numpy as np
import pytest

pytest.importorskip("dash")

from elm.analysis import load_run
from elm.dashboard import figures
from elm.dashboard.__main__ import main
from elm.dashboard.app import create_app, open_runs
from elm.dashboard.testing import dash_payload, make_synthetic_run


class Page:
    """Calls the app's callbacks as the browser does (POST /_dash-update-component)."""

    def __init__(self, runs):
        self.app = create_app(runs, refresh_s=0)
        self.client = self.app.server.test_client()
        self.deps = self.client.get("/_dash-dependencies").get_json()
        self.values = {"run.value": 0, "tabs.value": "archive", "versions.data": [[0]],
                       "compare-metric.value": "qd_score", "compare-x.value": "evaluations"}

    def call(self, output: str, **values):
        given = {}
        for key, value in values.items():  # slice_dim__value -> "slice-dim.value"
            ident, prop = key.split("__")
            given[f"{ident.replace('_', '-')}.{prop}"] = value
        payload = dash_payload(self.deps, output, {**self.values, **given})
        resp = self.client.post("/_dash-update-component", json=payload)
        assert resp.status_code in (200, 204), resp.data[-2000:]
        return {} if resp.status_code == 204 else resp.get_json()["response"]


def _arr(value) -> np.ndarray:
    """A figure array as sent to the browser: a list, or Plotly's base64 typed array."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape else data
    return np.asarray(value)


def _heatmaps(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t["type"] == "heatmap"]


def _check_heatmap_cells(run, traces) -> set[int]:
    """Every drawn cell's colour is its elite's fitness (or empty); returns the cells drawn."""
    best = run.cell_fitness()
    seen = set()
    for t in traces:
        z = _arr(t["z"]).astype(float)
        cells = _arr(t["customdata"])
        for cell, value in zip(cells.ravel().tolist(), z.ravel().tolist()):
            seen.add(cell)
            if cell in best:
                assert value == pytest.approx(best[cell][0])
            else:
                assert np.isnan(value)
    return seen


@pytest.fixture(scope="module")
def geometries(tmp_path_factory):
    root = tmp_path_factory.mktemp("geometries")
    return {
        "grid3": make_synthetic_run(root / "grid3", evaluations=2500, dims=3, bins=12),
        "cvt2": make_synthetic_run(root / "cvt2", evaluations=1500, kind="cvt", dims=2, cells=150),
        "cvt3": make_synthetic_run(root / "cvt3", evaluations=1500, kind="cvt", dims=3, cells=150),
        "grid1": make_synthetic_run(root / "grid1", evaluations=400, dims=1, bins=20),
        "grid4": make_synthetic_run(root / "grid4", evaluations=800, dims=4, bins=4),
    }


def test_3d_grid_is_drawn_as_slices_with_a_selector(geometries):
    runs = open_runs([geometries["grid3"]])
    page = Page(runs)
    run = runs[0]
    controls = page.call("archive-controls.style")
    assert controls["archive-controls"]["style"]["display"] == "block"
    assert controls["slice-dim"]["value"] == 2 and len(controls["slice-dim"]["options"]) == 3
    assert controls["axis-x-box"]["style"]["display"] == "none"
    options = page.call("slice-index.options", slice_dim__value=2)["slice-index"]["options"]
    assert [o["value"] for o in options] == ["all", *range(12)]

    fig = page.call("archive-graph.figure", slice_dim__value=2, slice_index__value="all")["archive-graph"]["figure"]
    traces = _heatmaps(fig)
    assert len(traces) == 12  # 12 panels for 12 x 12 x 12
    assert _check_heatmap_cells(run, traces) == set(range(12 ** 3))  # every cell exactly in its panel

    one = page.call("archive-graph.figure", slice_dim__value=0, slice_index__value=5)["archive-graph"]["figure"]
    (trace,) = _heatmaps(one)
    cells = set(_arr(trace["customdata"]).ravel().tolist())
    assert {np.unravel_index(c, (12, 12, 12))[0] for c in cells} == {5} and len(cells) == 144
    _check_heatmap_cells(run, [trace])

    # a click on a panel selects that cell and the panel shows its elite
    cell, (fitness, eid) = max(run.cell_fitness().items(), key=lambda kv: kv[1][1])
    sel = page.call("selected.data", archive_graph__clickData={"points": [{"customdata": cell}]})
    assert sel["selected"]["data"] == {"run": 0, "cell": cell}
    panel = page.call("elite-summary.children", selected__data={"run": 0, "cell": cell})
    assert f"Elite #{eid}" in str(panel["elite-summary"]["children"])
    assert panel["lineage-pick"]["value"] == eid
    shown = page.call("elite-code.children", lineage_pick__value=eid)
    assert shown["elite-code"]["children"] == run.evaluation(eid)["source"]
    outlined = page.call("archive-graph.figure", slice_dim__value=2, slice_index__value="all",
                         selected__data={"run": 0, "cell": cell})["archive-graph"]["figure"]
    assert len(outlined["layout"]["shapes"]) == 1


def test_cvt_2d_is_a_voronoi_diagram_and_higher_dimensions_a_projection(geometries):
    with load_run(geometries["cvt2"]) as run:
        fig = figures.archive_figure(run).to_plotly_json()
        heat, dots = fig["data"][0], fig["data"][1]
        labels = _arr(heat["customdata"])
        centroids = np.asarray(run.geometry()["centroids"])
        assert labels.shape == (240, 240) and set(np.unique(labels)) <= set(range(150))
        # each pixel lies nearest to the centroid it is labelled with
        xs, ys = _arr(heat["x"]), _arr(heat["y"])
        for r, c in [(0, 0), (120, 37), (239, 239), (17, 201)]:
            d = ((centroids - [xs[c], ys[r]]) ** 2).sum(axis=1)
            assert d[labels[r, c]] == pytest.approx(d.min())
        _check_heatmap_cells(run, [heat])
        assert len(_arr(dots["x"])) == 150
    page = Page(open_runs([geometries["cvt3"]]))
    controls = page.call("archive-controls.style")
    assert controls["axis-x-box"]["style"].get("display") != "none"
    fig = page.call("archive-graph.figure", axis_x__value=0, axis_y__value=2)["archive-graph"]["figure"]
    empty, occupied = fig["data"][0], fig["data"][1]
    with load_run(geometries["cvt3"]) as run:
        best = run.cell_fitness()
        centroids = np.asarray(run.geometry()["centroids"])
    drawn = _arr(occupied["customdata"])
    assert sorted(drawn.tolist()) == sorted(best) and len(_arr(empty["customdata"])) == 150 - len(best)
    assert _arr(occupied["y"]).tolist() == pytest.approx(centroids[drawn, 2].tolist())


@pytest.mark.parametrize("name, traces", [("grid1", 1), ("grid4", 2)])
def test_other_grids_draw(geometries, name, traces):
    with load_run(geometries[name]) as run:
        fig = figures.archive_figure(run, selected=0).to_plotly_json()
        assert len([t for t in fig["data"] if t.get("customdata") is not None]) >= traces
        if name == "grid1":
            _check_heatmap_cells(run, _heatmaps(fig))


def test_every_tab_renders_for_a_run_with_two_mutators(geometries):
    page = Page(open_runs([geometries["grid3"], geometries["cvt2"]]))
    progress = page.call("progress-graph.figure", tabs__value="progress")["progress-graph"]["figure"]
    assert len(progress["data"]) == 8  # 3 metrics x 2 x-axes + mean fitness twice
    mutators = page.call("mutator-graph.figure", tabs__value="mutators")
    assert {t["name"] for t in mutators["mutator-graph"]["figure"]["data"]} == {"gp", "llm"}
    assert "llm" in mutators["mutator-table"]["children"]["props"]["children"]
    tp = page.call("throughput-graph.figure", tabs__value="throughput")["throughput-graph"]["figure"]
    assert {"ok", "invalid", "error"} <= {t.get("name") for t in tp["data"]}
    cmp = page.call("compare-graph.figure", tabs__value="compare", compare_x__value="wall_s",
                    compare_metric__value="coverage")["compare-graph"]["figure"]
    assert [t["name"] for t in cmp["data"]] == ["grid3", "cvt2"]
    cfg = page.call("config-panel.children", tabs__value="config")
    assert "circle_packing" in str(cfg)
    # hidden tabs do no work
    assert page.call("progress-graph.figure", tabs__value="archive") == {}


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_export_writes_a_self_contained_report_and_paper_pngs(small_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([*map(str, small_runs), "--export", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0].endswith("report.html") and len(printed) == 10
    html = (out / "report.html").read_text()
    assert "<script src=" not in html.replace("<script src=\"data:", "")  # plotly.js inlined, no CDN
    assert html.count("Plotly.newPlot") == 3 + 2 * 4  # comparison (3) + per run: archive, progress, mutators, outcomes
    assert "def pack" in html and "Resolved config" in html
    import matplotlib.image

    for name in ("seed0_archive", "seed0_progress", "seed1_mutators", "seed1_outcomes", "compare"):
        w, h = _png_size(out / f"{name}.png")
        assert w >= 700 and h >= 400
        pixels = matplotlib.image.imread(out / f"{name}.png")
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20  # drawn, not blank


def test_command_line_errors_name_the_problem_and_the_fix(tmp_path, small_runs, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist: give a run directory" in capsys.readouterr().err
    (tmp_path / "notarun").mkdir()
    assert main([str(tmp_path / "notarun")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([str(small_runs[0]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_a_run_that_has_just_started_shows_empty_views(tmp_path):
    from elm.store import RunStore

    space = {"names": ["a", "b"], "lower": [0.0, 0.0], "upper": [1.0, 1.0], "bins": [5, 5]}
    store = RunStore.create(tmp_path / "new", meta={"config": {"seed": 0}, "descriptor_space": space,
                                                    "environment": "toy"})
    store.begin_session()
    try:
        runs = open_runs([tmp_path / "new"])
        page = Page(runs)
        assert "0 evaluations · 0 / 25 cells" in page.call("run-status.children")["run-status"]["children"]
        assert "running" in page.call("run-status.children")["run-status"]["children"]
        fig = page.call("archive-graph.figure")["archive-graph"]["figure"]
        assert np.isnan(_arr(_heatmaps(fig)[0]["z"]).astype(float)).all()
        assert "empty so far" in str(page.call("elite-summary.children"))
        for tab, output in (("progress", "progress-graph.figure"), ("mutators", "mutator-graph.figure"),
                            ("throughput", "throughput-graph.figure"), ("compare", "compare-graph.figure")):
            fig = page.call(output, tabs__value=tab)[output.split(".")[0]]["figure"]
            assert fig["layout"]["annotations"][0]["text"].startswith("no ")  # a message, not an error
        from elm.dashboard.report import export_report

        assert len(export_report(runs, out_dir=tmp_path / "rep")) == 5
    finally:
        store.close()


def test_search_tab_shows_operator_shares_islands_and_duplicates(ray_session, tmp_path):
    """A real run with three GP variants chosen by the bandit and two islands: the Search tab draws the
    shares, the islands with their migrations, the duplicate rate, and lists the events."""
    from elm.config import compose
    from elm.runner import run

    cfg = compose(["sandbox=process", "mutator=smollm2_gp", "~mutator.components.smollm2",
                   "+mutator.components.gp.variants={fine:{constant_sigma:0.02},coarse:{constant_sigma:0.3}}",
                   "search.bandit.enabled=true", "search.bandit.warmup=8", "search.islands.count=2",
                   "search.islands.migration_interval=40", "loop.progress=false", "ray.evaluator_num_cpus=0",
                   "budget.evaluations=160", "seed=3"])
    run(cfg, run_dir=tmp_path / "r")
    with load_run(tmp_path / "r") as r:
        shares = r.operator_shares()
        assert set(shares["operator"]) == {"gp/fine", "gp/coarse"}
        last = shares[shares["evaluations"] == shares["evaluations"].max()]
        assert abs(last["weight"].sum() - 1.0) < 1e-9
        assert set(r.island_stats()["island"]) == {0, 1}
        events = r.island_events()
        assert "migrate" in set(events["kind"]) and (events["elites"] > 0).all()
        stats = r.mutator_stats()
        assert {"duplicates", "duplicate_rate"} <= set(stats.columns)
        assert stats["duplicates"].sum() == r.status_counts().get("duplicate", 0)
    page = Page(open_runs([tmp_path / "r"]))
    out = page.call("search-graph.figure", tabs__value="search")
    names = {t.get("name") for t in out["search-graph"]["figure"]["data"]}
    assert {"gp/fine", "gp/coarse", "island 0", "island 1", "migrate", "gp"} <= names
    assert "migrate" in str(out["island-table"])
    assert page.call("search-graph.figure", tabs__value="archive") == {}  # hidden: no work


def test_progress_png_coverage_ticks_are_distinct_and_exact(tmp_path):
    """Coverage that stays under 2 %: ticks every 0.5 %, which whole percents would label 0%, 0%, 1%, 2%, 2%."""
    from matplotlib.ticker import PercentFormatter

    from elm.dashboard import report

    run = load_run(make_synthetic_run(tmp_path / "r", evaluations=250, dims=3, bins=20))
    assert run.metrics()["coverage"].max() < 0.02
    fig = report._progress_png(run)
    fig.canvas.draw()
    ax = fig.axes[1]
    ticks = [float(t) for t in ax.get_yticks()]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    whole = PercentFormatter(1.0, decimals=0)
    whole.axis = ax.yaxis
    assert len(set(whole.format_ticks(ticks))) < len(ticks)  # the case that repeated labels before
    assert len(set(labels)) == len(labels) == len(ticks), labels
    assert [float(label.rstrip("%")) for label in labels] == pytest.approx([100 * t for t in ticks])


@pytest.mark.parametrize("values, decimals", [
    ([0.0, 0.2, 0.4, 1.0], 0),
    ([-0.005, 0.0, 0.005, 0.009999999999999998, 0.015], 1),
    ([0.01, 0.0125, 0.015], 2),
    ([1 / 3], 4),
])
def test_percent_decimals_are_the_fewest_that_write_each_tick_exactly(values, decimals):
    from elm.dashboard.report import percent_decimals

    assert percent_decimals(values) == decimals


def test_the_elite_diff_keeps_old_and_new_lines_apart_without_a_trailing_newline(tmp_path):
    """A program whose last line has no newline: its diff marks that, as diff -u does, and the
    view shades the removed and the added line separately."""
    from elm.analysis import unified_diff
    from elm.dashboard.app import _diff_view

    diff = unified_diff("def f():\n    return 1", "def f():\n    return 2", before_name="#1", after_name="#2")
    assert diff.splitlines()[4:] == ["-    return 1", "\\ No newline at end of file",
                                     "+    return 2", "\\ No newline at end of file"]
    assert diff.endswith("\n")
    spans = _diff_view(diff).children
    removed = [s.children for s in spans if s.style and s.style["background"] == "#ffebe9"]
    added = [s.children for s in spans if s.style and s.style["background"] == "#e6ffec"]
    assert removed == ["-    return 1\n"] and added == ["+    return 2\n"]
    # with newlines the diff is what difflib gives
    assert unified_diff("a\n", "b\n").splitlines()[2:] == ["@@ -1 +1 @@", "-a", "+b"]
