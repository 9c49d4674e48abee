"""Start or resume a run from a resolved config: validate, open the store, start Ray, drive.

Everything that can be checked without Ray is checked first (environment
import and construction, descriptor bounds, archive settings, sandbox
availability, mutator target), so configuration mistakes fail in a second
with a message, not after Ray has started.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from elm.environment import Environment
from elm.loop import Driver, RunError, RunSummary, build_archive, build_selector, descriptor_space_for
from elm.sandbox import EnvironmentSpec
from elm.store import DB_NAME, RunStore, StoreError
from elm.workers import import_target, sandbox_limits

log = logging.getLogger("elm")

# Config keys that a resume may change; everything else comes from the stored run.
RESUMABLE_OVERRIDES = ("budget", "loop", "ray")


class ConfigError(ValueError):
    """The run configuration is invalid (message names the key and the fix)."""


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("elm-search", "numpy", "ray", "hydra-core", "omegaconf", "gvisor", "torch", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    runsc = shutil.which("runsc")
    if runsc:
        try:
            out = subprocess.run([runsc, "--version"], capture_output=True, text=True, timeout=10).stdout
            versions["runsc"] = out.splitlines()[0].strip() if out else "unknown"
        except (OSError, subprocess.SubprocessError):
            versions["runsc"] = "unknown"
    return versions


def check_seed_programs(env: Environment) -> list[str]:
    """``env.seed_programs()`` as a list of source strings, or a :class:`ConfigError` saying what is wrong."""
    name = type(env).__name__
    try:
        seeds = env.seed_programs()
    except Exception as exc:
        raise ConfigError(f"env: {name}.seed_programs() raised {type(exc).__name__}: {exc}") from exc
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"env: {name}.seed_programs() must return a list of program sources (str), "
                          f"got {type(seeds).__name__}")
    if not seeds:
        raise ConfigError(f"env: {name}.seed_programs() returned no programs; the archive needs at least one seed")
    bad = [i for i, s in enumerate(seeds) if not isinstance(s, str)]
    if bad:
        raise ConfigError(f"env: {name}.seed_programs() must return Python source strings; item(s) {bad} are "
                          f"{', '.join(sorted({type(seeds[i]).__name__ for i in bad}))}")
    return list(seeds)


def validate(cfg: Mapping[str, Any]) -> Environment:
    """Check a resolved config without starting anything; returns the environment built locally."""
    try:
        env = EnvironmentSpec.from_config(cfg["env"]).build()
    except Exception as exc:
        raise ConfigError(f"env: cannot build the environment: {exc}") from exc
    name = type(env).__name__
    try:
        declared = env.descriptor_space
    except Exception as exc:  # a user's property may raise anything; report it before Ray starts
        raise ConfigError(f"env: {name}.descriptor_space raised {type(exc).__name__}: {exc}") from exc
    check_seed_programs(env)
    try:
        space = descriptor_space_for(declared, cfg["qd"])
        build_archive(space, {**cfg["qd"], "cvt_samples": 1000, "cells": min(int(cfg["qd"].get("cells", 1000)), 1000)}
                      if cfg["qd"].get("kind") == "cvt" else cfg["qd"], seed=0)
        build_selector(cfg["qd"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"qd: {exc}") from exc
    try:
        sandbox_limits(cfg["sandbox"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"sandbox: {exc}") from exc
    backend = str(cfg["sandbox"].get("backend"))
    if backend == "gvisor":
        from sandbox import check_gvisor

        check_gvisor()  # raises SandboxUnavailable with install instructions
    elif backend != "process" and "." not in backend:
        raise ConfigError(f"sandbox.backend must be 'gvisor', 'process' or a dotted class path, got {backend!r}")
    try:
        import_target(str(cfg["mutator"]["_target_"]))
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"mutator: {exc}") from exc
    budget = cfg["budget"]
    if int(budget["evaluations"]) < 1:
        raise ConfigError(f"budget.evaluations must be >= 1, got {budget['evaluations']}")
    return env


def resume_config(run_dir: str | os.PathLike, composed: Mapping[str, Any], overrides: list[str]) -> dict:
    """The config to resume ``run_dir`` with: the stored one plus the overrides the user typed.

    ``composed`` is the (already schema-checked) config of the resume command and
    ``overrides`` the command-line overrides as typed (Hydra's
    ``overrides.task``). Only keys under :data:`RESUMABLE_OVERRIDES` may change;
    changing anything else (the environment, mutator, archive, sandbox, seed)
    would silently make a different run, so it is refused.
    """
    with RunStore.open(run_dir) as store:
        stored = store.config()
    if not stored:
        raise StoreError(f"{Path(run_dir) / DB_NAME} holds no config; it cannot be resumed")
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "resume" or key.startswith("hydra"):
            continue
        path = key.split(".")
        if path[0] not in RESUMABLE_OVERRIDES:
            raise ConfigError(
                f"cannot change {key!r} when resuming: a resumed run keeps its environment, mutator, "
                f"archive, sandbox and seed; only {', '.join(k + '.*' for k in RESUMABLE_OVERRIDES)} "
                "may be overridden. Start a new run to change it."
            )
        src, dst = composed, stored
        for part in path[:-1]:
            src = src[part]
            dst = dst.setdefault(part, {})
        if override.startswith("~"):
            dst.pop(path[-1], None)
        else:
            dst[path[-1]] = json.loads(json.dumps(src[path[-1]]))
    stored["resume"] = str(run_dir)
    return stored


def run(cfg: Mapping[str, Any], *, run_dir: str | os.PathLike, progress: bool | None = None) -> RunSummary:
    """Start a new run in ``run_dir``, or resume it if ``cfg["resume"]`` names a run directory.

    ``cfg`` must be resolved plain containers (``OmegaConf.to_container(cfg, resolve=True)``).
    On resume the stored config is used, except for the keys in
    :data:`RESUMABLE_OVERRIDES`, which are taken from ``cfg`` (e.g. a larger
    ``budget.evaluations``); :func:`resume_config` builds such a ``cfg`` from
    the overrides a user typed.
    """
    cfg = json.loads(json.dumps(cfg))  # a private, plain copy
    resume = cfg.get("resume")
    if resume:
        run_dir = Path(resume)
        store = RunStore.open(run_dir, readonly=False)
        stored = store.config()
        if not stored:
            raise StoreError(f"{run_dir / DB_NAME} holds no config; it cannot be resumed")
        for key in RESUMABLE_OVERRIDES:
            stored[key] = cfg[key]
        stored["resume"] = str(run_dir)
        cfg = stored
        env = validate(cfg)
    else:
        env = validate(cfg)
        run_dir = Path(run_dir)
        store = RunStore.create(run_dir, meta={
            "config": cfg,
            "seed": cfg["seed"],
            "versions": _package_versions(),
            "environment": env.name,
            "descriptor_space": descriptor_space_for(env.descriptor_space, cfg["qd"]).to_dict(),
            "sandbox_backend": cfg["sandbox"]["backend"],
        })
    if cfg["sandbox"]["backend"] == "process":
        log.warning("sandbox=process is UNSAFE: candidate programs run as plain processes on this machine "
                    "with your permissions (rlimits only). Use sandbox=gvisor for untrusted programs.")
    started_ray = _init_ray(cfg["ray"])
    try:
        driver = Driver(cfg=cfg, env=env, store=store, run_dir=str(run_dir), progress=progress)
        store.set_meta(archive=driver.archive.to_dict())
        return driver.run()
    finally:
        store.close()
        if started_ray:
            import ray

            ray.shutdown()


def _init_ray(ray_cfg: Mapping[str, Any]) -> bool:
    """Start (or join) Ray unless already initialised; returns True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs: dict[str, Any] = dict(log_to_driver=True, configure_logging=False)
    if ray_cfg.get("address"):
        kwargs["address"] = ray_cfg["address"]  # an existing cluster: its own settings apply
    else:
        kwargs["include_dashboard"] = bool(ray_cfg.get("include_dashboard", False))
        if ray_cfg.get("num_cpus") is not None:
            kwargs["num_cpus"] = int(ray_cfg["num_cpus"])
        if ray_cfg.get("num_gpus") is not None:
            kwargs["num_gpus"] = int(ray_cfg["num_gpus"])
        kwargs["object_store_memory"] = int(ray_cfg.get("object_store_memory_mb", 256)) * 1024 * 1024
    ray.init(**kwargs)
    return True
