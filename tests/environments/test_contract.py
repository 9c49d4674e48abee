"""Contract shared by every environment registered in conf/env/ (each YAML there is one).

Checked locally (no sandbox) and through the default sandbox: seeds are valid,
descriptors lie within bounds, a broken program gets an error status, and
evaluation is deterministic.
"""

from __future__ import annotations

import pytest

from elm.config import CONF_DIR, compose
from elm.environment import Environment
from elm.sandbox import EnvironmentSpec
from elm.types import EvalRequest, EvalStatus

ENVS = sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml"))


def _spec(name: str) -> EnvironmentSpec:
    return EnvironmentSpec.from_config(compose([f"env={name}"])["env"])


@pytest.fixture(params=ENVS)
def env_name(request):
    return request.param


def test_environment_builds_from_its_config(env_name):
    env = _spec(env_name).build()
    assert isinstance(env, Environment)
    assert env.name and env.entry_point
    space = env.descriptor_space
    assert space.dims >= 1 and len(space.names) == len(set(space.names))
    task = env.task()
    assert task.entry_point == env.entry_point and task.description


def test_seeds_are_valid_locally_within_bounds_and_deterministic(env_name):
    env = _spec(env_name).build()
    seeds = list(env.seed_programs())
    assert seeds, "an environment needs at least one seed program"
    space = env.descriptor_space
    for source in seeds:
        first = env.evaluate_local(source)
        assert first == env.evaluate_local(source)  # deterministic
        for name, v, lo, hi in zip(space.names, first.descriptor, space.lower, space.upper):
            assert lo <= v <= hi, f"seed descriptor {name}={v} outside [{lo}, {hi}]"


@pytest.mark.parametrize("backend", [pytest.param("gvisor", marks=pytest.mark.gvisor), "process"])
def test_seeds_and_broken_programs_in_the_sandbox(env_name, backend, tmp_path):
    from elm.sandbox import SandboxLimits
    from sandbox import make_sandbox

    spec = _spec(env_name)
    env = spec.build()
    seeds = list(env.seed_programs())
    broken = [
        f"def {env.entry_point}(*args, **kwargs):\n    raise RuntimeError('broken on purpose')\n",
        "x = 1\n",  # no entry point
    ]
    requests = [EvalRequest(id=i, source=s) for i, s in enumerate(seeds + broken)]
    with make_sandbox(backend, env=spec, limits=SandboxLimits(timeout_s=20), workers=2,
                      runtime_dir=str(tmp_path / "rt")) as sb:
        first = sb.evaluate(requests)
        again = sb.evaluate(requests[: len(seeds)])
    for _source, result, local in zip(seeds, first, (env.evaluate_local(s) for s in seeds)):
        assert result.status is EvalStatus.OK, result.error
        assert result.fitness == local.fitness and tuple(result.descriptor) == tuple(local.descriptor)
    assert [r.fitness for r in again] == [r.fitness for r in first[: len(seeds)]]
    assert first[len(seeds)].status is EvalStatus.ERROR and "broken on purpose" in first[len(seeds)].error
    assert first[len(seeds) + 1].status in (EvalStatus.INVALID, EvalStatus.ERROR)
