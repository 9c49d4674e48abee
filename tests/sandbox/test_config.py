"""Configuration errors: missing runsc, non-root, unknown backend, environments that do not load."""

from __future__ import annotations

import logging

import pytest

import sandbox
from elm.sandbox import EnvironmentSpec, SandboxUnavailable

from .conftest import BACKENDS, LIMITS, TOY, make


def test_public_surface():
    assert sorted(sandbox.__all__) == sorted(
        ["GVisorSandbox", "ProcessSandbox", "make_sandbox", "check_gvisor", "janitor"]
    )
    assert sandbox.GVisorSandbox.backend == "gvisor" and not sandbox.GVisorSandbox.unsafe
    assert sandbox.ProcessSandbox.backend == "process" and sandbox.ProcessSandbox.unsafe


def test_check_gvisor_without_runsc(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("RUNSC_PATH", raising=False)
    with pytest.raises(SandboxUnavailable) as info:
        sandbox.check_gvisor()
    msg = str(info.value)
    assert msg.startswith("runsc (gVisor) not found")
    assert "apt-get install runsc" in msg
    assert "sandbox=process (unsafe" in msg
    # constructing the default backend fails the same way, before touching anything
    with pytest.raises(SandboxUnavailable, match="apt-get install runsc"):
        sandbox.make_sandbox("gvisor", env=TOY, limits=LIMITS, workers=1, runtime_dir=str(tmp_path / "rt"))
    assert not (tmp_path / "rt").exists()


def test_check_gvisor_with_missing_runsc_path(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNSC_PATH", str(tmp_path / "no-such-runsc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="RUNSC_PATH"):
        sandbox.check_gvisor()


def test_check_gvisor_requires_root(monkeypatch, tmp_path):
    fake = tmp_path / "runsc"
    fake.write_text("#!/bin/sh\necho 'runsc version fake'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("RUNSC_PATH", raising=False)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailable) as info:
        sandbox.check_gvisor()
    msg = str(info.value)
    assert "must run as root" in msg and "uid 1000" in msg
    assert "no cgroup limits" in msg and "uidmap" in msg
    assert "sandbox=process" in msg


@pytest.mark.gvisor
def test_check_gvisor_passes_here():
    sandbox.check_gvisor()


def test_unknown_backend_lists_choices():
    with pytest.raises(ValueError) as info:
        sandbox.make_sandbox("docker", env=TOY, limits=LIMITS, workers=1)
    assert "'docker'" in str(info.value)
    assert "'gvisor'" in str(info.value) and "'process'" in str(info.value)


def test_process_backend_warns(sandbox_root, caplog):
    with caplog.at_level(logging.WARNING, logger="sandbox"):
        box = make("process", sandbox_root, workers=1)
    box.close()
    assert any("sandbox=process gives candidates full access to this machine" in r.getMessage()
               for r in caplog.records)
    # and which kinds of state it cannot keep from passing between candidates (the run log shows it)
    (limits,) = [r.getMessage() for r in caplog.records if "cannot isolate" in r.getMessage()]
    assert "keyrings" in limits and "signals" in limits
    assert ("SysV IPC" in limits) is not box._slots[0].info["namespaces"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_environment_that_fails_to_import(backend, sandbox_root):
    env = EnvironmentSpec("tests.sandbox.no_such_module.Env")
    with pytest.raises(ValueError) as info:
        make(backend, sandbox_root, env=env, workers=2)
    msg = str(info.value)
    assert "tests.sandbox.no_such_module.Env" in msg
    assert "failed to load" in msg and "no_such_module" in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_environment_whose_constructor_raises(backend, sandbox_root):
    env = EnvironmentSpec("tests.sandbox.toy_env.ToyEnv", {"fail_build": True})
    with pytest.raises(ValueError) as info:
        make(backend, sandbox_root, env=env, workers=1)
    msg = str(info.value)
    assert "tests.sandbox.toy_env.ToyEnv" in msg
    assert "RuntimeError: ToyEnv was asked to fail" in msg  # the traceback tail
    assert "Traceback" in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_class_in_module(backend, sandbox_root):
    env = EnvironmentSpec("tests.sandbox.toy_env.NoSuchEnv")
    with pytest.raises(ValueError, match="has no attribute 'NoSuchEnv'"):
        make(backend, sandbox_root, env=env, workers=1)


@pytest.mark.gvisor
def test_unknown_top_level_package_is_caught_before_starting(sandbox_root):
    env = EnvironmentSpec("nosuchpkg_xyz.envs.Env")
    with pytest.raises(ValueError, match="nosuchpkg_xyz"):
        make("gvisor", sandbox_root, env=env, workers=1)


def test_bad_arguments(sandbox_root):
    with pytest.raises(ValueError, match="workers"):
        make("process", sandbox_root, workers=0)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        make("process", sandbox_root, env=EnvironmentSpec("tests.sandbox.toy_env.ToyEnv", {"x": object()}))


def test_config_files_state_the_limits_that_apply():
    """conf/sandbox/*.yaml repeat SandboxLimits' defaults, and the default task cap is nproc itself."""
    import dataclasses
    from pathlib import Path

    import yaml

    from elm.sandbox import SandboxLimits
    from sandbox.gvisor_backend import task_cap

    defaults = SandboxLimits()
    conf = Path(__file__).resolve().parents[2] / "conf" / "sandbox"
    for name in ("gvisor.yaml", "process.yaml"):
        values = yaml.safe_load((conf / name).read_text())
        for field in dataclasses.fields(SandboxLimits):
            if field.name in values:
                assert values[field.name] == getattr(defaults, field.name), (name, field.name)
    # gVisor caps nproc so that a capped fork bomb fits under sandbox_pids; the defaults must not need it
    assert task_cap(defaults) == defaults.nproc
    assert task_cap(dataclasses.replace(defaults, nproc=64)) < 64
    assert task_cap(dataclasses.replace(defaults, nproc=64, sandbox_pids=100 + 16 * 64)) == 64


@pytest.mark.gvisor
def test_capped_nproc_is_logged_with_the_fix(sandbox_root, caplog):
    import dataclasses

    limits = dataclasses.replace(LIMITS, nproc=64, sandbox_pids=512)
    with caplog.at_level(logging.WARNING, logger="sandbox"):
        box = make("gvisor", sandbox_root, limits=limits, workers=1)
    try:
        assert box._slots[0].info["max_procs"] == 25
    finally:
        box.close()
    (msg,) = [r.getMessage() for r in caplog.records if "nproc=64 is capped" in r.getMessage()]
    assert "at 25 tasks" in msg and "sandbox_pids >= 1124" in msg
