"""Live web dashboard and static reports over run stores (``python -m elm.dashboard <run dir>``).

Needs the ``dashboard`` extra (``pip install 'elm-search[dashboard]'``: Dash, Plotly,
pandas, matplotlib). Entry points:

- :func:`elm.dashboard.app.open_runs` / :func:`~elm.dashboard.app.create_app` /
  :func:`~elm.dashboard.app.serve` -- the Dash app (``python -m elm.dashboard``);
- :func:`elm.dashboard.report.export_report` -- a self-contained HTML report and
  PNG figures (``python -m elm.dashboard <run dir> --export <dir>``);
- :mod:`elm.dashboard.figures` -- the Plotly figures both use.

See docs/dashboard.md.
"""

MISSING_HINT = (
    "the dashboard needs Dash, Plotly, pandas and matplotlib: install them with "
    "`pip install -e '.[dashboard]'` (bash .ci/setup.sh does it)"
)
