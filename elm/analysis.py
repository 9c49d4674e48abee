"""Analysis API: a run's store as pandas DataFrames, for notebooks, reports and the dashboard.

>>> from elm.analysis import load_run
>>> with load_run("outputs/2026-11-22/10-31-07") as run:
...     evals = run.evaluations()              # one row per evaluation (no sources unless asked)
...     elites = run.elites(with_source=True)  # the archive as it stands, one row per cell
...     curve = run.metrics()                  # QD score, coverage, best fitness over evaluations / wall time
...     rates = run.mutator_stats()            # per mutator and window: valid / insertion / new-cell rates, tokens

The store is opened read-only, so a run may still be writing it (SQLite WAL): every call
sees the evaluations committed so far. Overviews are aggregated in SQL and cached
incrementally (only rows added since the last call are read again), so they stay
cheap on runs of a million evaluations; program sources are read only when asked for.

How the archive is recovered from the store: the elite of a cell is its ``ok``
evaluation with the highest fitness, the earliest id on ties -- the archive's own
elitist rule, so :meth:`Run.elites` matches the run's ``elites.jsonl``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from elm.store import DB_NAME, RunStore, StoreError, connect_readonly

__all__ = ["Run", "combined_metrics", "find_runs", "load_run", "unified_diff"]

#: the incremental tally keeps at most about this many id buckets (it doubles their width beyond)
MAX_BUCKETS = 1000
#: default windows over evaluations: about this many, of at least MIN_WINDOW evaluations each
WINDOWS, MIN_WINDOW = 40, 25
#: statuses the archive counts as insertions (pyribs' IMPROVED and NEW_CELL)
INSERTED = ("new_cell", "improved")
#: a running session heartbeats with every batch; older than this means it stopped
LIVE_AFTER_S = 60.0

_EVAL_COLUMNS = (
    "id", "parent_ids", "mutator", "generation", "status", "fitness", "descriptor", "cell",
    "archive_status", "mutation_status", "error", "info", "tokens_in", "tokens_out", "model_s",
    "run_s", "score_s", "eval_s", "worker", "session", "created_at",
)


def find_runs(path: str | os.PathLike) -> list[Path]:
    """Run directories at ``path``: itself when it holds ``run.db``, else the runs below it.

    A Hydra sweep directory (``multirun/<date>/<time>``) holds one run per job; they
    are found up to three levels down, sorted by path. Raises :class:`StoreError`
    naming the path when there is none.
    """
    path = Path(path)
    if path.is_file() and path.name == DB_NAME:
        return [path.parent]
    if (path / DB_NAME).is_file():
        return [path]
    if not path.exists():
        raise StoreError(f"{path} does not exist: give a run directory (the one a run printed, "
                         f"holding {DB_NAME}) or a sweep directory holding such runs")
    found = sorted({p.parent for depth in ("*", "*/*", "*/*/*") for p in path.glob(f"{depth}/{DB_NAME}")})
    if not found:
        raise StoreError(f"{path} is not a run directory: it holds no {DB_NAME} (nor do its subdirectories); "
                         "give the directory a run printed at its start, e.g. outputs/<date>/<time>")
    return found


def load_run(path: str | os.PathLike) -> Run:
    """Open one run (its directory or its ``run.db``) read-only for analysis."""
    return Run(path)


def combined_metrics(runs: Iterable[Run]) -> pd.DataFrame:
    """The :meth:`Run.metrics` of several runs stacked, with a ``run`` column (their labels)."""
    frames = []
    for run in runs:
        frame = run.metrics()
        frame.insert(0, "run", run.label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def unified_diff(before: str | None, after: str | None, *, before_name: str = "parent",
                 after_name: str = "child") -> str:
    """Unified diff of two program sources (empty when identical).

    A last line without a newline is marked as ``diff -u`` and git mark it (a line
    ``\\ No newline at end of file`` after it), so every line of the diff ends in a newline and
    ``-old`` and ``+new`` never share a line.
    """
    lines = difflib.unified_diff((before or "").splitlines(keepends=True), (after or "").splitlines(keepends=True),
                                 fromfile=before_name, tofile=after_name)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


class _Tally:
    """Incremental aggregates of ``evaluations``: the per-cell best or the per-bucket counts.

    Rows are append-only but ids are allocated at proposal time, so a batch may
    land with ids below ones already seen (several evaluator actors). An update
    is incremental when every new row has an id above the last seen maximum
    (checked by counting); otherwise everything is re-read. The two aggregates are
    separate instances (``part``), so the archive view never waits for the counts.
    """

    def __init__(self, part: str) -> None:
        self.part = part  # "best" or "counts"
        self.count = 0
        self.max_id = -1
        self.bucket = 1  # evaluation ids per bucket: a power of two, doubled as the run grows
        self.best: dict[int, tuple[float, int]] = {}  # cell -> (fitness, id)
        # (bucket, mutator, status, archive_status) -> [n, tokens_in, tokens_out, model_s, run_s, eval_s]
        self.counts: dict[tuple, list[float]] = {}

    def update(self, conn: sqlite3.Connection) -> bool:
        """Bring the tally up to date; returns True when anything changed."""
        count, max_id = conn.execute("SELECT COUNT(*), COALESCE(MAX(id), -1) FROM evaluations").fetchone()
        if (count, max_id) == (self.count, self.max_id):
            return False
        (above,) = conn.execute("SELECT COUNT(*) FROM evaluations WHERE id > ?", (self.max_id,)).fetchone()
        if self.count + above != count:  # a row arrived below max_id: start again
            self.__init__(self.part)
        since = self.max_id
        if self.part == "best":
            # NOT INDEXED: a sequential scan in id order beats the cell index here, and makes
            # MAX()'s bare columns come from the earliest row on ties (the archive's rule).
            for cell, fitness, eid in conn.execute(
                "SELECT cell, MAX(fitness), id FROM evaluations NOT INDEXED "
                "WHERE id > ? AND cell IS NOT NULL AND fitness IS NOT NULL GROUP BY cell", (since,)
            ):
                old = self.best.get(cell)
                if old is None or fitness > old[0]:
                    self.best[cell] = (fitness, eid)
        else:
            if since < 0:
                while max_id // self.bucket >= MAX_BUCKETS:
                    self.bucket *= 2
            for row in conn.execute(
                "SELECT id / ?, mutator, status, archive_status, COUNT(*), SUM(tokens_in), "
                "SUM(tokens_out), SUM(model_s), SUM(run_s), SUM(eval_s) FROM evaluations "
                "WHERE id > ? GROUP BY 1, 2, 3, 4", (self.bucket, since)
            ):
                acc = self.counts.setdefault(tuple(row[:4]), [0, 0, 0, 0.0, 0.0, 0.0])
                for i, v in enumerate(row[4:]):
                    acc[i] += v or 0
            while max_id // self.bucket >= 2 * MAX_BUCKETS:  # the run grew: merge pairs of buckets
                self.bucket *= 2
                merged: dict[tuple, list[float]] = {}
                for (b, *rest), acc in self.counts.items():
                    into = merged.setdefault((b // 2, *rest), [0, 0, 0, 0.0, 0.0, 0.0])
                    for i, v in enumerate(acc):
                        into[i] += v
                self.counts = merged
        self.count, self.max_id = count, max_id
        return True

    def frame(self) -> pd.DataFrame:
        return self.from_rows([(*k, *v) for k, v in self.counts.items()], self.bucket)

    @staticmethod
    def from_rows(rows: list[tuple], width: int) -> pd.DataFrame:
        """Counting rows (bucket, mutator, status, archive_status, sums...) as a frame with ``first_id``."""
        cols = ["bucket", "mutator", "status", "archive_status", "evaluations", "tokens_in", "tokens_out",
                "model_s", "run_s", "eval_s"]
        frame = pd.DataFrame(rows, columns=cols)
        frame["first_id"] = frame["bucket"] * width
        return frame


class Run:
    """One run's store, opened read-only; safe to use while the run writes it.

    Methods return fresh pandas DataFrames; nothing is cached that could go stale
    (aggregates are brought up to date on every call). Thread-safe: the dashboard
    serves several requests at once. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        run_dir = path.parent if path.name == DB_NAME else path
        with RunStore.open(run_dir) as store:  # validates: exists, is a run store, known schema
            self.path: Path = store.path
            meta = store.meta()
        self.run_dir: Path = run_dir
        self._meta = {k: _maybe_json(v) for k, v in meta.items()}
        self._conn = connect_readonly(self.path, isolation_level=None)
        self._lock = threading.RLock()
        self._tallies = {"best": _Tally("best"), "counts": _Tally("counts")}
        self.label: str = run_dir.resolve().name
        """Short name for legends; the dashboard makes labels of several runs unique."""

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r})"

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._lock:
            cur = self._conn.execute(sql, params)
            rows = cur.fetchall()
            return pd.DataFrame(rows, columns=[d[0] for d in cur.description])

    def _tallied(self, part: str = "counts") -> _Tally:
        """The ``best`` or ``counts`` tally, updated inside one read transaction (a consistent snapshot)."""
        tally = self._tallies[part]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                tally.update(self._conn)
            finally:
                self._conn.execute("COMMIT")
            return tally

    def meta(self) -> dict[str, Any]:
        """The ``meta`` table with JSON values decoded (``config``, ``archive``, ``versions``, ...)."""
        return dict(self._meta)

    def config(self) -> dict[str, Any]:
        """The resolved config the run was started with."""
        return dict(self._meta.get("config") or {})

    @property
    def descriptor_names(self) -> tuple[str, ...]:
        """Names of the descriptor dimensions (also the descriptor columns of the DataFrames)."""
        return tuple(self.geometry()["space"]["names"])

    def geometry(self) -> dict[str, Any]:
        """The archive's geometry: ``kind`` (grid/cvt), ``space``, ``cells``, and ``bins`` or ``centroids``.

        Written by the run once its archive exists; before that (a run still starting)
        the descriptor space's default grid is described.
        """
        archive = self._meta.get("archive")
        if archive is None:  # written once the run's archive exists: look again
            rows = self._query("SELECT value FROM meta WHERE key = 'archive'")
            archive = self._meta["archive"] = _maybe_json(rows[0][0]) if rows else None
        if archive is not None:
            return archive
        space = self._meta.get("descriptor_space")
        if not space:
            raise StoreError(f"{self.path} records no descriptor space yet; wait until the run has started")
        return {"kind": "grid", "space": space, "cells": math.prod(space["bins"]), "bins": space["bins"],
                "lower": space["lower"], "upper": space["upper"], "qd_offset": 0.0}

    # ------------------------------------------------------------------ overview
    def version(self) -> tuple:
        """A cheap token that changes whenever the run records anything (for live refresh)."""
        return tuple(self._query(
            "SELECT (SELECT COALESCE(MAX(evaluations), 0) FROM metrics), "
            "(SELECT COUNT(*) FROM metrics), "
            "(SELECT COALESCE(MAX(heartbeat_at), 0) FROM sessions), "
            "(SELECT COUNT(*) FROM sessions WHERE end_reason IS NOT NULL)")[0])

    def summary(self) -> dict[str, Any]:
        """Headline figures: evaluations, elites, coverage, QD score, best fitness, wall time, tokens, state.

        Reads no per-evaluation counts (only the archive's tally and the last metrics row),
        so it stays cheap on the largest runs.
        """
        tally = self._tallied("best")
        last = self._query("SELECT * FROM metrics ORDER BY evaluations DESC LIMIT 1")
        names = [d[1] for d in self._query("PRAGMA table_info(metrics)")]
        metrics = dict(zip(names, last[0])) if last else {}
        sessions = self.sessions()
        geometry = self.geometry()
        fits = [f for f, _ in tally.best.values()]
        offset = float(geometry.get("qd_offset", 0.0))
        cells = int(geometry["cells"])
        state = "not started"
        if len(sessions):
            s = sessions.iloc[-1]
            if s["end_reason"] is not None and not pd.isna(s["end_reason"]):
                state = f"finished ({s['end_reason']})"
            elif time.time() - s["heartbeat_at"] < LIVE_AFTER_S:
                state = "running"
            else:
                state = "stopped (no heartbeat: killed or crashed; resume it to continue)"
        cfg = self.config()
        return {
            "label": self.label,
            "run_dir": str(self.run_dir),
            "environment": self._meta.get("environment"),
            "mutator": (cfg.get("mutator") or {}).get("_target_", "").rsplit(".", 1)[-1] or None,
            "seed": self._meta.get("seed"),
            "evaluations": tally.count,
            "num_elites": len(fits),
            "cells": cells,
            "coverage": len(fits) / cells if cells else 0.0,
            "qd_score": sum(f - offset for f in fits),
            "max_fitness": max(fits) if fits else None,
            "wall_s": float(metrics.get("wall_s") or 0.0),
            "tokens": int(metrics.get("tokens") or 0),
            "state": state,
        }

    def status_counts(self) -> pd.Series:
        """Evaluations per status (``ok``, ``invalid``, ``error``, ``timeout``, ...), largest first."""
        frame = self._tallied().frame()
        if frame.empty:
            return pd.Series(dtype="int64", name="evaluations")
        return frame.groupby("status")["evaluations"].sum().astype("int64").sort_values(ascending=False)

    def metrics(self) -> pd.DataFrame:
        """Archive statistics after each recorded batch: ``evaluations``, ``wall_s``, ``time``,
        ``num_elites``, ``coverage``, ``qd_score``, ``norm_qd_score``, ``max_fitness``,
        ``mean_fitness``, ``tokens``."""
        return self._frame("SELECT * FROM metrics ORDER BY evaluations")

    def sessions(self) -> pd.DataFrame:
        """The processes that worked on the run (start, heartbeat, elapsed, end reason)."""
        return self._frame("SELECT * FROM sessions ORDER BY id")

    def _windowed(self, window: int | None) -> pd.DataFrame:
        """Tally rows with a ``window_start`` column: windows of ``window`` evaluation ids.

        The default (about :data:`WINDOWS` windows of at least :data:`MIN_WINDOW`) and any
        multiple of the tally's bucket come from the incremental tally; another width is
        counted afresh in SQL.
        """
        tally = self._tallied()
        b = tally.bucket
        if window is None:
            window = math.ceil(max(MIN_WINDOW, math.ceil((tally.max_id + 1) / WINDOWS)) / b) * b
        window = int(window)
        if window < 1:
            raise ValueError(f"window must be a positive number of evaluations, got {window}")
        if window % b == 0:
            f = tally.frame()
        else:
            f = _Tally.from_rows(self._query(
                "SELECT id / ?, mutator, status, archive_status, COUNT(*), SUM(tokens_in), SUM(tokens_out), "
                "SUM(model_s), SUM(run_s), SUM(eval_s) FROM evaluations GROUP BY 1, 2, 3, 4", (window,)), window)
        f["window_start"] = (f["first_id"] // window) * window
        return f

    def mutator_stats(self, *, window: int | None = None) -> pd.DataFrame:
        """Per mutator and window of ``window`` evaluation ids (default: about 40 windows).

        Columns: ``window_start`` (first id of the window), ``mutator``, ``evaluations``,
        ``valid`` (status ``ok``), ``inserted`` (``new_cell`` or ``improved``: the child
        could enter the archive), ``new_cells``, ``duplicates`` (copies of a program already
        evaluated, not run again), the rates of these four over ``evaluations``
        (``valid_rate``, ``insertion_rate``, ``new_cell_rate``, ``duplicate_rate``),
        ``tokens_in``, ``tokens_out``, ``tokens``, ``model_s`` (mean seconds per child).
        """
        return _rates(self._windowed(window), ["window_start", "mutator"])

    def mutator_totals(self, *, by_version: bool = False) -> pd.DataFrame:
        """The columns of :meth:`mutator_stats` over the whole run, one row per mutator (seeds are not a
        mutator), largest first; computed by :func:`elm.stats.mutator_stats`, as the run summary is.

        ``by_version``: one row per mutator and model version (column ``model_version``: ``base``, a
        fine-tuned adapter's version, None for mutators without a model), in version order within a
        mutator: the rates of each set of weights of a run that fine-tunes its model."""
        from elm.stats import mutator_stats

        with self._lock:
            stats = mutator_stats(self._conn, by_version=by_version)
        cols = ["mutator", *(["model_version"] if by_version else []), "evaluations", "valid", "inserted",
                "new_cells", "duplicates", "valid_rate",
                "insertion_rate", "new_cell_rate", "tokens_in", "tokens_out", "tokens", "model_s"]
        rows = [{"mutator": s.mutator, **({"model_version": s.model_version} if by_version else {}),
                 "evaluations": s.proposals, "valid": s.valid, "inserted": s.inserted,
                 "new_cells": s.new_cells, "duplicates": s.duplicates, "valid_rate": s.valid_rate,
                 "insertion_rate": s.insertion_rate,
                 "new_cell_rate": s.new_cell_rate, "tokens_in": s.tokens_in, "tokens_out": s.tokens_out,
                 "tokens": s.tokens_in + s.tokens_out, "model_s": s.model_s / s.proposals if s.proposals else 0.0}
                for s in stats]
        f = pd.DataFrame(rows, columns=cols)
        if by_version:  # mutators largest first, each one's versions in the order they were made
            size = f.groupby("mutator")["evaluations"].transform("sum")
            return f.assign(_size=size).sort_values(["_size", "mutator"], ascending=[False, True], kind="stable",
                                                    ignore_index=True).drop(columns="_size")
        return f.sort_values("evaluations", ascending=False, ignore_index=True)

    def finetune_rounds(self) -> pd.DataFrame:
        """The in-run fine-tuning rounds (``finetune.enabled``): ``round``, ``lane``, ``status``
        (:class:`elm.types.AdapterStatus`), ``version``, ``evaluations`` (when it started), ``examples``
        (training pairs), ``seconds``, ``steps``, ``error``. Empty for a run without them."""
        f = self._optional_frame("SELECT id AS round, lane, status, version, evaluations, examples, seconds, error, "
                                 "json_extract(info, '$.result.steps') AS steps FROM adapters ORDER BY id",
                                 ["round", "lane", "status", "version", "evaluations", "examples", "seconds",
                                  "error", "steps"])
        return f

    def _optional_frame(self, sql: str, columns: Sequence[str]) -> pd.DataFrame:
        """``sql``'s rows, or an empty frame with ``columns`` for a store without the table (schema 1)."""
        try:
            return self._frame(sql)
        except sqlite3.OperationalError:
            return pd.DataFrame(columns=list(columns))

    def operator_shares(self) -> pd.DataFrame:
        """How the share of children of each operator (mixture component, or ``component/variant``)
        changed over the run: columns ``evaluations`` (when the shares were set), ``operator``,
        ``weight`` (its share from then on, summing to 1 across operators), ``children`` (so far),
        ``reward_rate`` (the bandit's recent archive improvement per second of compute; null before
        it has data). Empty for a run with one operator."""
        return self._optional_frame("SELECT evaluations, operator, weight, children, reward_rate FROM operators "
                                    "ORDER BY evaluations, operator",
                                    ["evaluations", "operator", "weight", "children", "reward_rate"])

    def island_stats(self) -> pd.DataFrame:
        """Each island's archive over the run (``search.islands.count`` > 1): ``evaluations``,
        ``island``, ``num_elites``, ``qd_score``, ``max_fitness``. Empty without islands."""
        return self._optional_frame("SELECT evaluations, island, num_elites, qd_score, max_fitness FROM islands "
                                    "ORDER BY evaluations, island",
                                    ["evaluations", "island", "num_elites", "qd_score", "max_fitness"])

    def island_events(self) -> pd.DataFrame:
        """Migrations and resets: ``evaluations``, ``kind`` (``migrate``/``reset``), ``source``,
        ``target`` and ``elites`` (how many elites were copied into ``target``)."""
        f = self._optional_frame("SELECT evaluations, kind, source, target, elite_ids FROM island_events ORDER BY id",
                                 ["evaluations", "kind", "source", "target", "elite_ids"])
        f["elites"] = [len(json.loads(v)) for v in f["elite_ids"]] if len(f) else []
        return f.drop(columns=["elite_ids"])

    def outcomes(self, *, window: int | None = None) -> pd.DataFrame:
        """Evaluations per status and window of evaluation ids (long format).

        Columns: ``window_start``, ``status``, ``evaluations``, ``run_s`` and ``eval_s``
        (mean seconds running the program / the whole sandbox round trip).
        """
        f = self._windowed(window)
        if f.empty:
            return pd.DataFrame(columns=["window_start", "status", "evaluations", "run_s", "eval_s"])
        g = f.groupby(["window_start", "status"], as_index=False)[["evaluations", "run_s", "eval_s"]].sum()
        g["run_s"] /= g["evaluations"]
        g["eval_s"] /= g["evaluations"]
        return g.sort_values(["window_start", "status"], ignore_index=True)

    def throughput(self, *, points: int = 60) -> pd.DataFrame:
        """Evaluations per second of run wall time (summed over sessions), at about ``points`` times.

        Columns: ``wall_s`` (end of the interval), ``evaluations`` (finished by then),
        ``evals_per_s`` (over the interval since the previous row).
        """
        m = self._frame("SELECT evaluations, wall_s FROM metrics ORDER BY evaluations")
        if len(m) < 2:
            return pd.DataFrame(columns=["wall_s", "evaluations", "evals_per_s"])
        span = float(m["wall_s"].iloc[-1] - m["wall_s"].iloc[0]) or 1.0
        step = span / max(points, 1)
        keep = (m["wall_s"] // step).drop_duplicates(keep="last").index
        s = m.loc[keep].reset_index(drop=True)
        if s.index.size < 2:
            s = m.iloc[[0, -1]].reset_index(drop=True)
        dt = s["wall_s"].diff()
        s["evals_per_s"] = (s["evaluations"].diff() / dt.where(dt > 0)).astype("float64")
        return s.iloc[1:].reset_index(drop=True)

    # ------------------------------------------------------------------ rows
    def _expand(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Decode JSON columns; one column per descriptor dimension (named after it)."""
        if "parent_ids" in frame:
            frame["parent_ids"] = [json.loads(v) for v in frame["parent_ids"]]
        if "info" in frame:
            frame["info"] = [json.loads(v) if isinstance(v, str) and v else {} for v in frame["info"]]
        if "descriptor" in frame:
            names = self.descriptor_names
            decoded = [json.loads(v) if isinstance(v, str) else None for v in frame["descriptor"]]
            at = frame.columns.get_loc("descriptor")
            for i, name in enumerate(names):
                col = name if name not in frame.columns else f"descriptor_{name}"
                frame.insert(at + 1 + i, col, [None if d is None else d[i] for d in decoded])
                frame[col] = frame[col].astype("float64")
            frame = frame.drop(columns="descriptor")
        for col in ("cell", "fitness"):
            if col in frame:
                frame[col] = frame[col].astype("Int64" if col == "cell" else "float64")
        return frame

    def evaluations(self, *, status: str | None = None, mutator: str | None = None,
                    with_source: bool = False) -> pd.DataFrame:
        """Every evaluation (optionally of one ``status`` / ``mutator``), indexed by ``id``.

        Columns are those of the ``evaluations`` table (docs/run_store.md) with
        ``parent_ids`` as lists, ``info`` as dicts, and the descriptor as one float
        column per dimension, named after it. ``source`` only with ``with_source=True``
        (sources dominate the store's size).
        """
        cols = list(_EVAL_COLUMNS) + (["source"] if with_source else [])
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if mutator is not None:
            where.append("mutator = ?")
            params.append(mutator)
        sql = f"SELECT {', '.join(cols)} FROM evaluations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self._expand(self._frame(sql + " ORDER BY id", params)).set_index("id", drop=False)

    def elites(self, *, with_source: bool = False) -> pd.DataFrame:
        """The archive recovered from the store, one row per occupied cell, indexed by ``cell``.

        Columns: ``cell``, ``id``, ``fitness``, one column per descriptor dimension,
        ``mutator``, ``generation``, ``parent_ids``, ``created_at`` (and ``source``).
        """
        best = self._tallied("best").best
        cols = ["id", "cell", "fitness", "descriptor", "mutator", "generation", "parent_ids", "created_at"]
        if with_source:
            cols.append("source")
        ids = sorted(eid for _, eid in best.values())
        frames = [self._frame(f"SELECT {', '.join(cols)} FROM evaluations WHERE id IN "
                              f"({', '.join('?' * len(chunk))})", chunk)
                  for chunk in (ids[i:i + 900] for i in range(0, len(ids), 900))]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
        frame = self._expand(frame).sort_values("cell")
        return frame[["cell"] + [c for c in frame.columns if c != "cell"]].set_index("cell", drop=False)

    def cell_fitness(self) -> dict[int, tuple[float, int]]:
        """``{cell: (fitness, elite id)}`` for every occupied cell: the archive in one cheap call."""
        return dict(self._tallied("best").best)

    def evaluation(self, evaluation_id: int) -> dict[str, Any]:
        """One evaluation as a dict (with ``source``; JSON columns decoded).

        Raises ``LookupError`` naming the run when there is no such id.
        """
        with self._lock:
            cur = self._conn.execute("SELECT * FROM evaluations WHERE id = ?", (int(evaluation_id),))
            row = cur.fetchone()
            names = [d[0] for d in cur.description]
        if row is None:
            raise LookupError(f"run {self.run_dir} has no evaluation {evaluation_id}")
        rec = dict(zip(names, row))
        rec["parent_ids"] = json.loads(rec["parent_ids"])
        rec["descriptor"] = None if rec["descriptor"] is None else json.loads(rec["descriptor"])
        rec["info"] = json.loads(rec["info"]) if rec["info"] else {}
        return rec

    def elite(self, cell: int) -> dict[str, Any] | None:
        """The elite of ``cell`` as :meth:`evaluation` returns it, or None when the cell is empty."""
        hit = self._tallied("best").best.get(int(cell))
        return None if hit is None else self.evaluation(hit[1])

    def lineage(self, evaluation_id: int) -> pd.DataFrame:
        """The parent chain of an evaluation back to its seed program, seed first.

        Follows the first parent at each step. Columns: ``id``, ``generation``,
        ``mutator``, ``status``, ``fitness``, ``cell``, ``archive_status``,
        ``parent_ids``, ``edits`` (the mutator's description of its change, if any).
        A parent missing from the store (never happens in runs written by this
        engine) ends the chain.
        """
        chain, seen, nxt = [], set(), int(evaluation_id)
        while nxt is not None and nxt not in seen:
            seen.add(nxt)
            rows = self._query("SELECT id, generation, mutator, status, fitness, cell, archive_status, "
                               "parent_ids, info FROM evaluations WHERE id = ?", (nxt,))
            if not rows:
                if not chain:
                    raise LookupError(f"run {self.run_dir} has no evaluation {evaluation_id}")
                break
            eid, gen, mut, status, fit, cell, astatus, parents, info = rows[0]
            parents = json.loads(parents)
            info = json.loads(info) if info else {}
            edits = (info.get("mutation") or {}).get("edits") if isinstance(info.get("mutation"), dict) else None
            chain.append((eid, gen, mut, status, fit, cell, astatus, parents,
                          "; ".join(map(str, edits)) if isinstance(edits, list) else (edits or "")))
            nxt = parents[0] if parents else None
        cols = ["id", "generation", "mutator", "status", "fitness", "cell", "archive_status", "parent_ids", "edits"]
        return pd.DataFrame(chain[::-1], columns=cols)

    def diff_to_parent(self, evaluation_id: int) -> str:
        """Unified diff from the evaluation's first parent to it ('' for a seed program)."""
        child = self.evaluation(evaluation_id)
        if not child["parent_ids"]:
            return ""
        pid = child["parent_ids"][0]
        try:
            parent = self.evaluation(pid)["source"]
        except LookupError:
            parent = None
        return unified_diff(parent, child["source"], before_name=f"#{pid}", after_name=f"#{evaluation_id}")


def _rates(f: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sum tally rows by ``keys`` and derive the per-mutator rates (see :meth:`Run.mutator_stats`)."""
    cols = keys + ["evaluations", "valid", "inserted", "new_cells", "duplicates", "valid_rate", "insertion_rate",
                   "new_cell_rate", "duplicate_rate", "tokens_in", "tokens_out", "tokens", "model_s"]
    if f.empty:
        return pd.DataFrame(columns=cols)
    f = f.assign(valid=f["evaluations"].where(f["status"] == "ok", 0),
                 inserted=f["evaluations"].where(f["archive_status"].isin(INSERTED), 0),
                 new_cells=f["evaluations"].where(f["archive_status"] == "new_cell", 0),
                 duplicates=f["evaluations"].where(f["status"] == "duplicate", 0))
    g = f.groupby(keys, as_index=False)[
        ["evaluations", "valid", "inserted", "new_cells", "duplicates", "tokens_in", "tokens_out", "model_s"]].sum()
    n = g["evaluations"]
    g["duplicate_rate"] = g["duplicates"] / n
    g["valid_rate"] = g["valid"] / n
    g["insertion_rate"] = g["inserted"] / n
    g["new_cell_rate"] = g["new_cells"] / n
    g["tokens"] = g["tokens_in"] + g["tokens_out"]
    g["model_s"] = g["model_s"] / n
    return g[cols].sort_values(keys, ignore_index=True)


def _maybe_json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value
