"""The dashboard in a real browser: headless Chromium against `python -m elm.dashboard` on real runs.

Screenshots are kept as artefacts in artifacts/dashboard/ (archive.png, compare.png, ...).
"""

from __future__ import annotations

import shutil

import pytest

from elm.analysis import load_run
from elm.store import EvaluationRecord, RunStore
from tests.dashboard.conftest import dashboard, save_screenshot

pytest.importorskip("dash")

_PLOT = "const g = document.querySelector('#{id} .js-plotly-plot');"


def _wait(driver, predicate, what: str, timeout: float = 60.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: predicate(d), message=f"timed out waiting for {what}")


def _layout(driver, graph_id: str, expression: str):
    """``expression`` of the graph's current layout (e.g. ``"title.text"``), or None while the graph has
    no such value: before its first figure arrives Dash draws an empty one (no title, no shapes), and
    a refresh replaces the figure at any moment, so a wait must read through absent values."""
    return driver.execute_script(
        _PLOT.format(id=graph_id) + "try { const v = g.layout." + expression + "; return v === undefined ? null : v; }"
        " catch (e) { if (e instanceof TypeError) return null; throw e; }")


def _traces(driver, graph_id: str) -> list[dict] | None:
    return driver.execute_script(
        _PLOT.format(id=graph_id) + "return g && g.data ? g.data.map(t => ({type: t.type, name: t.name})) : null;")


def _open_tab(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    tab = driver.find_element(By.XPATH, f"//div[contains(@class, 'tab') and normalize-space()='{label}']")
    tab.click()


def _text(driver, element_id: str) -> str | None:
    return driver.execute_script(f"const e = document.getElementById('{element_id}'); return e ? e.textContent : null;")


def _severe_console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _click_cell(driver, x: float, y: float) -> None:
    """A real pointer click at the data coordinates (x, y) of the archive heatmap."""
    from selenium.webdriver.common.action_chains import ActionBuilder

    px, py = driver.execute_script(
        _PLOT.format(id="archive-graph") +
        "const r = g.getBoundingClientRect(), xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis;"
        "return [r.left + xa._offset + xa.d2p(arguments[0]), r.top + ya._offset + ya.d2p(arguments[1])];", x, y)
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(px), int(py)).click()
    actions.perform()


def test_page_loads_click_shows_elite_and_compare_shows_both_runs(small_runs, browser, tmp_path):
    with load_run(small_runs[0]) as run:
        elites = run.elites().sort_values("fitness", ascending=False)
        geometry = run.geometry()
        target = elites.iloc[1]  # not the best elite, which the panel shows before any click
        expected = run.evaluation(int(target["id"]))
        lineage = run.lineage(int(target["id"]))
    bins, lo, hi = geometry["bins"], geometry["lower"], geometry["upper"]
    i0, i1 = divmod(int(target["cell"]), bins[1])
    x = lo[0] + (i0 + 0.5) * (hi[0] - lo[0]) / bins[0]
    y = lo[1] + (i1 + 0.5) * (hi[1] - lo[1]) / bins[1]

    with dashboard(*small_runs) as url:
        browser.get_log("browser")  # drain what earlier pages logged
        browser.get(url)
        # Within the wait's 60 s: on 2 shared cores at load 40 the first heatmap took 12-30 s (the
        # browser's rendering is starved, not the server); a 30 s limit failed 3 of 10 repeats there.
        # How fast the page opens is benchmarks/bench_dashboard.py's figure, measured apart.
        _wait(browser, lambda d: (_traces(d, "archive-graph") or [{}])[0].get("type") == "heatmap",
              "the archive heatmap", timeout=60)
        status = _text(browser, "run-status")
        assert "120 evaluations" in status and f"{len(elites)} / 144 cells" in status
        _wait(browser, lambda d: (_text(d, "elite-title") or "").startswith("Elite #"), "the best elite")

        from selenium.common.exceptions import TimeoutException

        for attempt in range(3):  # recomputes the position if the figure was still being laid out
            _click_cell(browser, x, y)
            try:
                _wait(browser, lambda d: (_text(d, "elite-title") or "").startswith(f"Elite #{int(target['id'])}"),
                      f"elite #{int(target['id'])} after clicking cell {int(target['cell'])}", timeout=20)
                break
            except TimeoutException:
                if attempt == 2:
                    raise
        _wait(browser, lambda d: _text(d, "elite-code") == expected["source"], "the clicked elite's code")
        assert _text(browser, "elite-fitness") == f"{expected['fitness']:.10g}"
        assert "radius_cv = " in _text(browser, "elite-descriptor")
        # Lineage back to a seed: first row generation 0 from the seed mutator, last row the elite.
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#lineage-table tbody tr')].map(r => r.cells[0].textContent + '|' "
            "+ r.cells[1].textContent + '|' + r.cells[2].textContent);")
        assert rows[0].endswith("|0|seed") and rows[-1].startswith(f"#{int(target['id'])}|")
        assert len(rows) == len(lineage)
        diff = _text(browser, "elite-diff")
        if expected["parent_ids"]:
            assert diff.startswith(f"--- #{expected['parent_ids'][0]}")
        # the clicked cell is outlined on the heatmap
        _wait(browser, lambda d: len(_layout(d, "archive-graph", "shapes") or []) == 1, "the outline")
        shot = save_screenshot(browser, "archive.png", tmp_path)
        assert shot.stat().st_size > 20_000

        _open_tab(browser, "Compare runs")
        _wait(browser, lambda d: len(_traces(d, "compare-graph") or []) == 2, "two curves on the comparison plot")
        names = [t["name"] for t in _traces(browser, "compare-graph")]
        assert names == ["seed0", "seed1"]
        legend = browser.execute_script(
            "return [...document.querySelectorAll('#compare-graph .legendtext')].map(e => e.textContent);")
        assert legend == ["seed0", "seed1"]
        summary = browser.execute_script("return document.querySelectorAll('#compare-summary tbody tr').length;")
        assert summary == 2
        save_screenshot(browser, "compare.png", tmp_path)

        # Every other view renders with data, and nothing failed in the page.
        for label, graph, at_least in (("Progress", "progress-graph", 6), ("Mutators", "mutator-graph", 4),
                                       ("Throughput & outcomes", "throughput-graph", 4)):
            _open_tab(browser, label)
            _wait(browser, lambda d: len(_traces(d, graph) or []) >= at_least, f"the {label} figure")  # noqa: B023
            save_screenshot(browser, f"{graph.removesuffix('-graph')}.png", tmp_path)
        _open_tab(browser, "Config")
        _wait(browser, lambda d: "circle_packing" in (_text(d, "config-yaml") or ""), "the resolved config")
        assert "budget:" in _text(browser, "config-yaml")
        assert _severe_console_errors(browser) == []
        browser.get("about:blank")  # stop polling before the server goes


def test_open_page_follows_a_run_that_is_still_writing(small_runs, browser, tmp_path):
    run_dir = tmp_path / "live"
    shutil.copytree(small_runs[1], run_dir)
    with load_run(run_dir) as run:
        before = run.summary()
        geometry = run.geometry()
        empty = next(c for c in range(geometry["cells"]) if c not in run.cell_fitness())
        last = run.evaluations().iloc[-1]
    bins, lo, hi = geometry["bins"], geometry["lower"], geometry["upper"]
    i0, i1 = divmod(empty, bins[1])
    descriptor = (lo[0] + (i0 + 0.5) * (hi[0] - lo[0]) / bins[0], lo[1] + (i1 + 0.5) * (hi[1] - lo[1]) / bins[1])

    with dashboard(run_dir, refresh_s=0.5) as url:
        browser.get_log("browser")  # drain what earlier pages logged
        browser.get(url)
        _wait(browser, lambda d: f"{before['evaluations']} evaluations" in (_text(d, "run-status") or ""),
              "the status line")
        # The run goes on: another session writes 30 more evaluations, one of them filling an empty cell.
        store = RunStore.open(run_dir, readonly=False)
        try:
            store.begin_session()
            first = store.max_id() + 1
            records = [EvaluationRecord(id=first + k, parent_ids=(int(last["id"]),), mutator="gp", generation=1,
                                        source="def pack():\n    return None\n", status="invalid", error="synthetic")
                       for k in range(29)]
            records.append(EvaluationRecord(id=first + 29, parent_ids=(0,), mutator="gp", generation=1,
                                            source="def pack():\n    return 'new'\n", status="ok", fitness=9.5,
                                            descriptor=descriptor, cell=empty, archive_status="new_cell"))
            store.record(records, metrics=dict(
                evaluations=before["evaluations"] + 30, wall_s=before["wall_s"] + 1,
                num_elites=before["num_elites"] + 1,
                coverage=(before["num_elites"] + 1) / 144, qd_score=before["qd_score"] + 9.5,
                norm_qd_score=(before["qd_score"] + 9.5) / 144, max_fitness=9.5, mean_fitness=1.0))
        finally:
            store.close()
        after = before["evaluations"] + 30
        _wait(browser, lambda d: f"{after} evaluations" in (_text(d, "run-status") or ""), "the refreshed status",
              timeout=30)
        _wait(browser, lambda d: (_layout(d, "archive-graph", "title.text") or "").startswith(
            f"grid archive: {before['num_elites'] + 1} of 144"), "the refreshed heatmap", timeout=30)
        # the new elite is the best now, so the panel shows it without a click
        _wait(browser, lambda d: (_text(d, "elite-title") or "").startswith(f"Elite #{first + 29}"),
              "the new best elite", timeout=30)
        save_screenshot(browser, "live.png", tmp_path)
        assert _severe_console_errors(browser) == []
        browser.get("about:blank")
