#!/usr/bin/env python3
"""Run an ELM experiment: ``python run_elm.py [env=...] [mutator=...] [budget.evaluations=N] [seed=S]``.

Resume a stopped run (also after SIGKILL): ``python run_elm.py resume=<run dir>``.
Sweeps: ``python run_elm.py -m seed=0,1,2``. See README.md and ``conf/``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from elm.config import register_configs

# Hydra's run directory: a new run gets outputs/<date>/<time>; a resumed run keeps
# the Hydra files of each resume inside its own directory.
OmegaConf.register_new_resolver(
    "elm_run_dir",
    lambda resume, default: f"{resume}/resumes/{Path(default).parent.name}_{Path(default).name}" if resume else default,
    replace=True,
)
register_configs()
log = logging.getLogger("elm")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from elm.runner import ConfigError, resume_config, run
    from elm.loop import RunError
    from elm.sandbox import SandboxUnavailable
    from elm.store import StoreError

    # Resolve before anything crosses into Ray (no ${hydra:...} left).
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    run_dir = cfg.resume or HydraConfig.get().runtime.output_dir
    try:
        if cfg.resume:  # the stored config, plus only the overrides typed now
            plain = resume_config(cfg.resume, plain, list(HydraConfig.get().overrides.task))
        summary = run(plain, run_dir=run_dir)
    except (ConfigError, SandboxUnavailable, StoreError, RunError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(summary.format())
    print(f"resume with:    python run_elm.py resume={summary.run_dir}")
    return summary.qd_score


if __name__ == "__main__":
    main()
