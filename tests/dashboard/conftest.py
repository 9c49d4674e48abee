"""Fixtures for the dashboard tests: two real small runs, a dashboard server, headless Chromium."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory) -> list[Path]:
    """Two real runs (circle packing, GP mutator, process sandbox, 120 evaluations, seeds 0 and 1).

    Made with a Ray of their own that is shut down afterwards (unless one was already
    running), so tests collected later still start from a process without Ray.
    """
    pytest.importorskip("pandas")
    import ray

    from elm.config import compose
    from elm.runner import run

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
                 object_store_memory=128 * 1024 * 1024)
    root = tmp_path_factory.mktemp("dashboard-runs")
    dirs = []
    try:
        for seed in (0, 1):
            cfg = compose(["sandbox=process", "mutator=gp", "loop.progress=false", "ray.evaluator_num_cpus=0",
                           "budget.evaluations=120", f"seed={seed}"])
            run(cfg, run_dir=root / f"seed{seed}")
            dirs.append(root / f"seed{seed}")
    finally:
        if started:
            ray.shutdown()
    return dirs


@contextmanager
def dashboard(*run_dirs: Path, refresh_s: float = 1.0, timeout: float = 60.0):
    """``python -m elm.dashboard <runs> --port 0`` as a user starts it; yields its URL (loopback)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "elm.dashboard", *map(str, run_dirs), "--port", "0", "--refresh", str(refresh_s)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        deadline, seen = time.time() + timeout, []
        url = None
        while url is None:
            assert proc.poll() is None, f"the dashboard exited ({proc.returncode}): {''.join(seen)}"
            assert time.time() < deadline, f"the dashboard did not start in {timeout} s: {''.join(seen)}"
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                seen.append(line)
                if "http://127.0.0.1:" in line:
                    url = line.split("http://", 1)[1].split()[0]
                    url = "http://" + url
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium driven by selenium through /usr/bin/chromedriver."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium / chromedriver not installed: apt-get install chromium chromium-driver "
                    "(bash .ci/setup.sh --dev does it when root)")
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--disable-extensions", f"--user-data-dir={profile}",
                "--window-size=1500,1250"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver, name: str, tmp_path: Path) -> Path:
    """Screenshot to the test's tmp_path and, as an artefact, to artifacts/dashboard/ (gitignored)."""
    path = tmp_path / name
    driver.save_screenshot(str(path))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return ARTIFACTS / name
