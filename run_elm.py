#!/usr/bin/env python3
"""Run an ELM experiment from a checkout: the same as the installed ``elm-run`` command.

``python run_elm.py [env=...] [mutator=...] [budget.evaluations=N] [seed=S]``; resume a stopped run
(also after SIGKILL) with ``python run_elm.py resume=<run dir>``. See README.md and ``conf/``.
"""

from elm.cli import main

if __name__ == "__main__":
    main()
