"""Dashboard on a 100,000-evaluation run: open time and callback latencies (prints, asserts nothing).

Run: ``python -m benchmarks.bench_dashboard [--evaluations N] [--keep DIR] [--no-browser]``.

1. Writes a synthetic run of N evaluations straight through :class:`elm.store.RunStore`
   (circle-packing seed programs with tweaked constants as sources, a real
   :class:`~elm.archive.GridArchive` deciding cells and archive statuses, two mutators,
   realistic status mix, one metrics row per batch of 100), in well under a minute.
2. Starts ``python -m elm.dashboard <run> --port 0`` as a user would and times
   - the command's start until it serves (imports, store open, first queries),
   - each callback over HTTP (``POST /_dash-update-component``, the request the
     browser makes), several times: median and worst,
   - with headless Chromium (when ``/usr/bin/chromium`` and ``chromedriver`` exist):
     page navigation until the archive heatmap is drawn.

The synthetic run and the callback payloads come from :mod:`elm.dashboard.testing`, which the
dashboard tests use too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from elm.dashboard.testing import dash_payload, make_synthetic_run
from elm.store import EvaluationRecord, RunStore

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- measuring


def _post(url: str, payload: dict) -> tuple[float, dict]:
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url + "_dash-update-component", data=data,
                                 headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
    return time.perf_counter() - t, json.loads(body) if body else {}


def _get(url: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()
    return time.perf_counter() - t


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _append_batch(run_dir: Path, n: int) -> None:
    """One more batch of ``n`` evaluations, written as a resumed run would (a new session)."""
    store = RunStore.open(run_dir, readonly=False)
    try:
        store.begin_session()
        first = store.max_id() + 1
        store.record([EvaluationRecord(id=first + k, parent_ids=(0,), mutator="gp", generation=1,
                                       source="def pack():\n    return None\n", status="invalid",
                                       error="synthetic") for k in range(n)])
        store.end_session("evaluation budget")
    finally:
        store.close()


def _start_dashboard(run_dir: Path) -> tuple[subprocess.Popen, str, float]:
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "elm.dashboard", str(run_dir), "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        raise RuntimeError(f"the dashboard did not start (exit {proc.wait()})")
    _get(url)
    return proc, url, time.perf_counter() - t


def _browser_first_heatmap(url: str) -> float | None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        t = time.perf_counter()
        browser.get(url)
        WebDriverWait(browser, 60).until(lambda b: b.execute_script(
            "const g = document.querySelector('#archive-graph .js-plotly-plot');"
            "return g && g.data && g.data.length > 0 && g.data[0].type === 'heatmap';"))
        return time.perf_counter() - t
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the run here and keep it")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    tmp = None
    if args.keep is not None and (args.keep / "run.db").exists():
        run_dir = args.keep
        print(f"reusing {run_dir}")
    else:
        tmp = None if args.keep else tempfile.mkdtemp(prefix="bench-dashboard-")
        run_dir = args.keep or Path(tmp) / "run"
        t = time.perf_counter()
        make_synthetic_run(run_dir, evaluations=args.evaluations)
        size = (run_dir / "run.db").stat().st_size / 2**20
        print(f"wrote {args.evaluations:,} evaluations in {time.perf_counter() - t:.1f} s ({size:.0f} MiB)")

    from elm.analysis import load_run

    t = time.perf_counter()
    with load_run(run_dir) as run:
        summary = run.summary()
    print(f"analysis: load_run + summary   {1000 * (time.perf_counter() - t):8.1f} ms "
          f"({summary['evaluations']:,} evaluations, {summary['num_elites']} elites)")

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} (CPU seconds below do not depend on it)")
    t0 = time.perf_counter()
    proc, url, started = _start_dashboard(run_dir)
    try:
        print(f"dashboard: command start -> serving          {started:6.2f} s wall, "
              f"{_cpu_s(proc.pid):.2f} s CPU (imports, opening the store, the archive's scan)")
        # What a browser asks for to draw the first view, in order.
        for name in ("", "_dash-layout"):
            _get(url + name)
        with urllib.request.urlopen(url + "_dash-dependencies", timeout=60) as resp:
            deps = json.loads(resp.read())
        with load_run(run_dir) as run:
            elites = run.elites().sort_values("fitness")
            cell, eid = int(elites.iloc[len(elites) // 2]["cell"]), int(elites.iloc[len(elites) // 2]["id"])
            best = int(elites.iloc[-1]["id"])
        poll = _post(url, dash_payload(deps, "versions.data", {"refresh.n_intervals": 0, "versions.data": None}))[1]
        versions = poll["response"]["versions"]["data"]
        page = {"versions.data": versions, "run.value": 0, "tabs.value": "archive", "slice-index.value": "all",
                "compare-metric.value": "qd_score", "compare-x.value": "evaluations",
                "refresh.n_intervals": 2}
        for output, extra in (("run-status.children", {}), ("archive-controls.style", {}),
                              ("archive-graph.figure", {}), ("elite-summary.children", {}),
                              ("elite-code.children", {"lineage-pick.value": best})):
            _post(url, dash_payload(deps, output, {**page, **extra}))
        first_view = time.perf_counter() - t0
        print(f"dashboard: command start -> first view served {first_view:6.2f} s wall, "
              f"{_cpu_s(proc.pid):.2f} s CPU (page, layout, status, heatmap, best elite with lineage and code)")
        cases = [
            ("refresh tick (nothing new)", "versions.data", {}),
            ("status line", "run-status.children", {}),
            ("archive heatmap", "archive-graph.figure", {}),
            ("click a cell -> selection", "selected.data",
             {"archive-graph.clickData": {"points": [{"customdata": cell}]}}),
            ("elite panel + lineage", "elite-summary.children", {"selected.data": {"run": 0, "cell": cell}}),
            ("code + diff to parent", "elite-code.children", {"lineage-pick.value": eid}),
            ("archive heatmap, cell outlined", "archive-graph.figure", {"selected.data": {"run": 0, "cell": cell}}),
            ("progress tab", "progress-graph.figure", {"tabs.value": "progress"}),
            ("mutators tab", "mutator-graph.figure", {"tabs.value": "mutators"}),
            ("throughput tab", "throughput-graph.figure", {"tabs.value": "throughput"}),
            ("compare tab", "compare-graph.figure", {"tabs.value": "compare"}),
            ("config tab", "config-panel.children", {"tabs.value": "config"}),
        ]
        print(f"callbacks over HTTP ({args.repeat} calls each; the first call of a tab includes its first scan; "
              "CPU from /proc in 10 ms ticks):")
        for label, output, extra in cases:
            payload = dash_payload(deps, output, {**page, **extra})
            cpu = _cpu_s(proc.pid)
            times = [_post(url, payload)[0] for _ in range(args.repeat)]
            cpu = (_cpu_s(proc.pid) - cpu) / args.repeat
            print(f"  {label:<34} median {1000 * statistics.median(times):7.1f} ms   "
                  f"worst {1000 * max(times):7.1f} ms   server CPU {1000 * cpu:6.1f} ms/call")
        # The run goes on: another batch lands; the open page's tick and views catch up incrementally.
        _append_batch(run_dir, 100)
        live = [("refresh tick (new batch)", "versions.data", {"versions.data": versions}),
                ("status line", "run-status.children", {}),
                ("archive heatmap", "archive-graph.figure", {}),
                ("mutators tab", "mutator-graph.figure", {"tabs.value": "mutators"})]
        print("after 100 more evaluations were written by another process:")
        for label, output, extra in live:
            dt, _ = _post(url, dash_payload(deps, output, {**page, **extra}))
            print(f"  {label:<34} {1000 * dt:7.1f} ms")
        if not args.no_browser:
            first = _browser_first_heatmap(url)
            if first is None:
                print("  (no chromium/chromedriver: browser timing skipped)")
            else:
                print(f"headless Chromium: navigation -> heatmap drawn   {first:6.2f} s wall "
                      "(loads and parses plotly.js, ~4.6 MB, then the first view's callbacks)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
