"""A multi-node Ray cluster on one machine: placement by resources, and a run that survives losing a node."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from elm.config import compose
from elm.runner import run


@pytest.fixture
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    was_running = ray.is_initialized()
    ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if was_running:  # give the rest of the session its shared local Ray back
            ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
                     object_store_memory=128 * 1024 * 1024)


def _count(path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'duplicate'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_placement_by_resources_and_losing_a_worker_node(cluster, tmp_path):
    import ray

    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, resources={"sandbox": 2})
    cpu_node = cluster.add_node(num_cpus=2, resources={"sandbox": 2})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    cfg = compose([
        "sandbox=process", "mutator=gp", "loop.progress=false", "budget.evaluations=400", "loop.batch_size=8",
        "loop.max_in_flight=4", "ray.mutator_num_gpus=0.5", "ray.mutator_num_cpus=0",
        "ray.evaluator_actors=2", "ray.evaluator_num_cpus=0", "+ray.evaluator_resources.sandbox=1",
        "ray.spread=true",
    ])
    db = tmp_path / "r" / "run.db"
    killed = {}

    def kill_cpu_node_mid_run():
        deadline = time.time() + 240
        while time.time() < deadline and _count(db) < 120:
            time.sleep(0.1)
        killed["at"] = _count(db)
        cluster.remove_node(cpu_node)

    killer = threading.Thread(target=kill_cpu_node_mid_run, daemon=True)
    killer.start()
    summary = run(cfg, run_dir=tmp_path / "r")
    killer.join(timeout=10)

    assert 120 <= killed["at"] < 400, "the node was not killed mid-run"
    assert summary.evaluations == 400
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, status FROM evaluations WHERE status != 'duplicate' ORDER BY id").fetchall()
    # a duplicate child is recorded (pointing at its original) but not evaluated nor counted in the budget
    dangling = conn.execute("SELECT COUNT(*) FROM evaluations d WHERE d.status = 'duplicate' AND NOT EXISTS "
                            "(SELECT 1 FROM evaluations o WHERE o.id = d.duplicate_of AND o.status != 'duplicate')"
                            ).fetchone()[0]
    assert dangling == 0
    placement = json.loads(conn.execute("SELECT value FROM meta WHERE key='placement'").fetchone()[0])
    assert len(rows) == 400 and len({r[0] for r in rows}) == 400
    assert "lost" not in {r[1] for r in rows}  # work on the dead node was re-issued, not dropped
    # The mutator needs a GPU: only gpu_node has one. Evaluators need `sandbox`: never the head node.
    assert [w["node_id"] for w in placement["mutator"]] == [gpu_node.node_id]
    evaluator_nodes = {w["node_id"] for w in placement["evaluator"]}
    assert evaluator_nodes == {gpu_node.node_id, cpu_node.node_id}  # spread over both sandbox nodes
