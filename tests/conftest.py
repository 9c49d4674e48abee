"""Shared fixtures: one Ray session for the whole test run (starting Ray costs ~2-5 s)."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Sandboxes share the node's memory; do not let Ray's memory monitor kill test workers.
os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")

HAVE_RUNSC = shutil.which("runsc") is not None and os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="runsc (gVisor) not installed or not root: apt-get install runsc")
    if not HAVE_RUNSC:
        for item in items:
            if "gvisor" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that needs one (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(
            address="local",  # never join another process's instance on this machine
            num_cpus=2,
            num_gpus=0,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=128 * 1024 * 1024,
        )
    yield ray
    ray.shutdown()
