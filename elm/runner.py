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
from collections.abc import Mapping
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from elm.config import ConfigError, RayConfig, RunConfig, load_config
from elm.environment import Environment
from elm.loop import Driver
from elm.mutator import Mutator
from elm.plugins import resolve_class
from elm.qd import build_archive, build_selector, descriptor_space_for
from elm.sandbox import EnvironmentSpec
from elm.store import DB_NAME, RunStore, StoreError
from elm.summary import RunSummary
from elm.workers import sandbox_class

log = logging.getLogger("elm")

# Config keys that a resume may change; everything else comes from the stored run.
RESUMABLE_OVERRIDES = ("budget", "loop", "ray", "finetune")

__all__ = ["ConfigError", "RESUMABLE_OVERRIDES", "resume_config", "run", "validate"]


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


def validate(cfg: RunConfig | Mapping[str, Any]) -> Environment:
    """Check a config without starting anything; returns the environment built locally.

    Everything that can fail before Ray starts is tried here: the config's keys and types
    (:func:`elm.config.load_config`), the environment's construction, descriptor space and seeds,
    the archive and selector settings, the sandbox backend's availability and the mutator's class.
    """
    cfg = load_config(cfg)
    try:
        env = EnvironmentSpec.from_config(cfg.env).build()
    except Exception as exc:
        raise ConfigError(f"env: cannot build the environment: {exc}") from exc
    name = type(env).__name__
    try:
        declared = env.descriptor_space
    except Exception as exc:  # a user's property may raise anything; report it before Ray starts
        raise ConfigError(f"env: {name}.descriptor_space raised {type(exc).__name__}: {exc}") from exc
    check_seed_programs(env)
    try:
        space = descriptor_space_for(declared, cfg.qd)
        qd = cfg.qd if cfg.qd.kind != "cvt" else replace(cfg.qd, cvt_samples=1000, cells=min(cfg.qd.cells, 1000))
        build_selector(cfg.qd).check_archive(build_archive(space, qd, seed=0))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"qd: {exc}") from exc
    try:
        backend = sandbox_class(cfg.sandbox)
    except ValueError as exc:
        raise ConfigError(f"sandbox: {exc}") from exc
    backend.check_available()  # raises SandboxUnavailable saying how to install it
    try:
        resolve_class(str(cfg.mutator["_target_"]), Mutator, what="mutator")
    except ValueError as exc:
        raise ConfigError(f"mutator: {exc}") from exc
    if cfg.budget.evaluations < 1:
        raise ConfigError(f"budget.evaluations must be >= 1, got {cfg.budget.evaluations}")
    if cfg.loop.batch_size < 1 or cfg.loop.max_in_flight < 1:
        raise ConfigError(f"loop.batch_size and loop.max_in_flight must be >= 1, got "
                          f"{cfg.loop.batch_size} and {cfg.loop.max_in_flight}")
    if cfg.ray.mutator_actors < 1 or cfg.ray.evaluator_actors < 1:
        raise ConfigError("ray.mutator_actors and ray.evaluator_actors must be >= 1")
    return env


def migrate_stored_config(stored: Mapping[str, Any]) -> dict:
    """A config stored by an earlier version, in today's keys (so old runs can be resumed).

    ``sandbox.backend: gvisor|process`` became ``sandbox._target_``.
    """
    cfg = json.loads(json.dumps(stored))
    sandbox = cfg.get("sandbox") or {}
    if "backend" in sandbox:
        backend = sandbox.pop("backend")
        sandbox.setdefault("_target_", {"gvisor": "sandbox.GVisorSandbox", "process": "sandbox.ProcessSandbox"}
                           .get(str(backend), str(backend)))
    return cfg


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
    stored = migrate_stored_config(stored)
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


def run(cfg: RunConfig | Mapping[str, Any], *, run_dir: str | os.PathLike,
        progress: bool | None = None) -> RunSummary:
    """Start a new run in ``run_dir``, or resume it if ``cfg.resume`` names a run directory.

    ``cfg``: a :class:`RunConfig`, or resolved plain containers (:func:`elm.config.compose`'s,
    ``OmegaConf.to_container(cfg, resolve=True)``), checked by :func:`elm.config.load_config`.
    On resume the stored config is used, except for the keys in :data:`RESUMABLE_OVERRIDES`,
    which are taken from ``cfg`` (e.g. a larger ``budget.evaluations``); :func:`resume_config`
    builds such a ``cfg`` from the overrides a user typed.
    """
    cfg = load_config(cfg)
    if cfg.resume:
        run_dir = Path(cfg.resume)
        store = RunStore.open(run_dir, readonly=False)
        try:
            stored = store.config()
            if not stored:
                raise StoreError(f"{run_dir / DB_NAME} holds no config; it cannot be resumed")
            stored = migrate_stored_config(stored)
            fresh = cfg.to_dict()
            for key in RESUMABLE_OVERRIDES:
                stored[key] = fresh[key]
            stored["resume"] = str(run_dir)
            cfg = load_config(stored)
            env = validate(cfg)
        except BaseException:
            store.close()
            raise
    else:
        env = validate(cfg)
        run_dir = Path(run_dir)
        store = RunStore.create(run_dir, meta={
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "versions": _package_versions(),
            "environment": env.name,
            "descriptor_space": descriptor_space_for(env.descriptor_space, cfg.qd).to_dict(),
            "sandbox_backend": sandbox_class(cfg.sandbox).backend,
        })
    if sandbox_class(cfg.sandbox).unsafe:
        log.warning("sandbox %s is UNSAFE: candidate programs run as plain processes on this machine with your "
                    "permissions (rlimits only). Use sandbox=gvisor for untrusted programs.", cfg.sandbox._target_)
    gaps = sandbox_class(cfg.sandbox).isolation_gaps
    if gaps:
        log.warning("sandbox %s does not keep these from passing between candidates (results may depend on "
                    "evaluation order): %s", cfg.sandbox._target_, "; ".join(gaps))
    started_ray = _init_ray(cfg.ray)
    try:
        driver = Driver(cfg=cfg, env=env, store=store, run_dir=str(run_dir), progress=progress)
        store.set_meta(archive=driver.archive.to_dict())
        return driver.run()
    finally:
        store.close()
        if started_ray:
            import ray

            ray.shutdown()


def _init_ray(ray_cfg: RayConfig) -> bool:
    """Start (or join) Ray unless already initialised; returns True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs: dict[str, Any] = dict(log_to_driver=True, configure_logging=False)
    if ray_cfg.address:
        kwargs["address"] = ray_cfg.address  # an existing cluster: its own settings apply
    else:
        # a new local instance even when another run on this machine has one (joining it would fail
        # on num_cpus, or share its resources)
        kwargs["address"] = "local"
        kwargs["include_dashboard"] = ray_cfg.include_dashboard
        if ray_cfg.num_cpus is not None:
            kwargs["num_cpus"] = ray_cfg.num_cpus
        if ray_cfg.num_gpus is not None:
            kwargs["num_gpus"] = ray_cfg.num_gpus
        kwargs["object_store_memory"] = ray_cfg.object_store_memory_mb * 1024 * 1024
    ray.init(**kwargs)
    return True
