"""The ``elm-run`` command (also ``python run_elm.py`` in a checkout): run or resume an experiment.

    elm-run [env=...] [mutator=...] [budget.evaluations=N] [seed=S]
    elm-run resume=<run dir> [budget.evaluations=N]
    elm-run -m seed=0,1,2                      # a sweep
    elm-run --config-dir my_conf env=my_env    # configs of your own, searched before the built-in ones

Hydra composes the config from the package's ``conf/``; :func:`elm.config.load_config` checks it;
:func:`elm.runner.run` runs it. Mistakes stop with a one-line ``error:`` and exit status 2.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from elm.config import CONF_DIR, register_configs, register_resolvers

register_resolvers(resume_dir=True)
register_configs()
log = logging.getLogger("elm")


def resume_command(run_dir: str) -> str:
    """A command that resumes ``run_dir`` from the current directory, with what this run needed.

    The environment and mutator classes are imported again on resume, so a ``PYTHONPATH`` the run
    relied on is repeated (made absolute); the config itself comes from the run store, so
    ``--config-dir`` is not needed.
    """
    argv0 = Path(sys.argv[0])
    if argv0.name == "elm-run" or argv0.suffix != ".py":
        program = "elm-run"
    else:
        program = f"{shlex.quote(sys.executable)} {shlex.quote(str(argv0.resolve()))}"
    prefix = ""
    pythonpath = os.environ.get("PYTHONPATH")
    if pythonpath:
        parts = [str(Path(p).resolve()) for p in pythonpath.split(os.pathsep) if p]
        prefix = f"PYTHONPATH={shlex.quote(os.pathsep.join(parts))} "
    return f"{prefix}{program} resume={shlex.quote(str(Path(run_dir).resolve()))}"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from elm.config import ConfigError, load_config
    from elm.loop import RunError
    from elm.runner import resume_config, run
    from elm.sandbox import SandboxUnavailable
    from elm.store import StoreError

    # Resolve before anything crosses into Ray (no ${hydra:...} left).
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    run_dir = cfg.resume or HydraConfig.get().runtime.output_dir
    try:
        if cfg.resume:  # the stored config, plus only the overrides typed now
            if not (Path(cfg.resume) / "run.db").is_file():
                raise StoreError(f"resume={cfg.resume}: no run there ({Path(cfg.resume) / 'run.db'} does not exist)")
            plain = resume_config(cfg.resume, plain, list(HydraConfig.get().overrides.task))
        summary = run(load_config(plain), run_dir=run_dir)
    except (ConfigError, SandboxUnavailable, StoreError, RunError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        if not (output_dir / "run.db").exists():  # nothing ran: leave no directory behind
            _discard(output_dir)
        sys.exit(2)
    print(summary.format())
    print(f"resume with:    {resume_command(summary.run_dir)}")
    return summary.qd_score


def _discard(output_dir: Path) -> None:
    """Remove what Hydra wrote for a run that never started (``.hydra/``, its log) and the
    directories Hydra created for it, so a mistake leaves nothing behind. Only directories that
    did not exist before the command started are removed, and only when they are empty."""
    import shutil

    from elm.config import PREEXISTING

    for name in (".hydra", "run_elm.log"):
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()
    here = output_dir.absolute()
    existed = next((v for k, v in PREEXISTING.items() if Path(k).absolute() == here), here)
    while here != existed and existed in here.parents:
        try:
            here.rmdir()  # only if empty
        except OSError:
            return
        here = here.parent


def main() -> None:
    """Console entry point of ``elm-run``."""
    _main()


if __name__ == "__main__":
    main()
