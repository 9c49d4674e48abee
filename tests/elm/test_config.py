"""Config composition and validation: mistakes fail before Ray starts, with clear messages."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import ConfigKeyError, ValidationError

from elm.config import compose
from elm.runner import ConfigError, validate


def test_default_config_composes_to_plain_resolved_containers():
    cfg = compose()
    assert cfg["env"]["_target_"] == "environments.circle_packing.CirclePacking"
    # the embedded SmolLM2 model mixed with the AST baseline (conf/mutator/smollm2_gp.yaml)
    assert cfg["mutator"]["_target_"] == "mutators.mixture.MixtureMutator"
    assert cfg["mutator"]["components"]["gp"]["_target_"] == "mutators.gp.GPMutator"
    assert cfg["sandbox"]["backend"] == "gvisor"
    assert cfg["ray"]["address"] is None and cfg["seed"] == 0
    assert type(cfg) is dict and type(cfg["qd"]) is dict  # safe to send to Ray actors


def test_user_overrides():
    cfg = compose(["budget.evaluations=123", "seed=5", "qd=cvt", "qd.cells=50", "sandbox=process"])
    assert cfg["budget"]["evaluations"] == 123 and cfg["seed"] == 5
    assert cfg["qd"]["kind"] == "cvt" and cfg["qd"]["cells"] == 50
    assert cfg["sandbox"]["backend"] == "process"


@pytest.mark.parametrize("override, expected", [
    ("budget.evaluatons=5", "evaluatons"),  # typo in a typed group
    ("mutator.constant_sigmaa=0.2", "constant_sigmaa"),  # typo in a built-in mutator's keys
    ("env.nn=3", "nn"),  # typo in a built-in environment's keys
    ("budget.evaluations=many", "many"),  # wrong type
    ("seeed=1", "seeed"),
])
def test_typos_and_wrong_types_fail_with_hydras_message(override, expected):
    with pytest.raises((HydraException, ConfigKeyError, ValidationError)) as info:
        compose([override])
    assert expected in str(info.value)


def test_unknown_environment_lists_the_options():
    with pytest.raises(ConfigCompositionException) as info:
        compose(["env=sodaraec"])
    assert "sodaraec" in str(info.value) and "circle_packing" in str(info.value)


@pytest.mark.parametrize("override, match", [
    ("qd.bounds=[[0,1],[1,0]]", "lower bound"),
    ("qd.bounds=[[0,1]]", "2 pairs"),
    ("qd.bins=[0,4]", "bins must be >= 1"),
    ("qd.bins=[4]", "qd.bins has 1 entries"),
    ("qd.out_of_bounds=wrap", "wrap"),
    ("qd.selection=random", "random"),
    ("qd.kind=hex", "hex"),
    ("sandbox.timeout_s=0", "timeout_s"),
    ("sandbox.backend=docker", "docker"),
    ("mutator._target_=mutators.nope.Mutator", "mutators.nope"),
    ("env._target_=environments.nope.Env", "environments.nope"),
    ("budget.evaluations=0", "budget.evaluations"),
])
def test_bad_values_fail_in_validation(override, match):
    import ray

    was_running = ray.is_initialized()  # another test's session fixture may have started Ray
    cfg = compose(["sandbox=process", override] if not override.startswith("sandbox.backend") else [override])
    with pytest.raises(ConfigError, match=match):
        validate(cfg)
    assert ray.is_initialized() == was_running  # validation starts nothing
