"""The run store: one SQLite database (``run.db``, WAL mode) per run.

Tables (schema version :data:`SCHEMA_VERSION`):

``meta``         key/value text: ``schema_version``, ``config`` (the resolved run
                 config as JSON), ``seed``, ``versions`` (JSON), ``created_at``,
                 ``environment``, ``descriptor_space`` (JSON), ``archive`` (JSON
                 geometry), ``sandbox_backend``, ``dedup_key_version`` (the Python
                 version whose canonical forms the ``program_key`` column holds).
``evaluations``  one row per *finished* evaluation (see :class:`EvaluationRecord`).
``sessions``     one row per process that worked on the run (start, resume...),
                 with its elapsed wall time, so budgets continue across resumes.
``metrics``      archive statistics snapshots over evaluations and wall time.
``operators``    the share of children of each operator over time (adaptive operator choice).
``islands``      per-island archive statistics over time; ``island_events`` the migrations
                 and resets of the island model.
``adapters``     in-run fine-tuning rounds (:mod:`elm.intrain`): one row per round, numbered
                 across resumes, with its status, the adapter's version and directory, the
                 examples and seconds it took, and the error of a failed round.

Every batch of evaluations is written in one transaction, together with a
metrics snapshot and the session heartbeat: a run killed with SIGKILL keeps
every evaluation whose batch was committed, and nothing half-written.
JSON columns hold lists/objects; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3  # 2: program_key, duplicate_of, variant, island; operators, islands tables. 3: adapters
DB_NAME = "run.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    id              INTEGER PRIMARY KEY,   -- run-wide evaluation id, stable across resumes
    parent_ids      TEXT    NOT NULL,      -- JSON list of evaluation ids ([] for seeds)
    mutator         TEXT    NOT NULL,      -- "seed" for the initial population
    generation      INTEGER NOT NULL,      -- 0 for seeds, 1 + max(parent generation) otherwise
    source          TEXT,                  -- program source; NULL if the mutator produced none
    status          TEXT    NOT NULL,      -- elm.types.EvalStatus value, or the mutator's failure status
    fitness         REAL,
    descriptor      TEXT,                  -- JSON list of floats (as measured, before clipping)
    cell            INTEGER,               -- archive cell, NULL when not scored or rejected
    archive_status  TEXT,                  -- new_cell / improved / not_added, NULL when not offered
    mutation_status TEXT,                  -- the mutator's per-child status (applied, no_op, ...)
    error           TEXT,                  -- reason or traceback tail for non-ok statuses
    info            TEXT,                  -- JSON object from the environment / mutator
    tokens_in       INTEGER NOT NULL DEFAULT 0,
    tokens_out      INTEGER NOT NULL DEFAULT 0,
    model_s         REAL    NOT NULL DEFAULT 0,
    run_s           REAL    NOT NULL DEFAULT 0,
    score_s         REAL    NOT NULL DEFAULT 0,
    eval_s          REAL    NOT NULL DEFAULT 0,
    worker          TEXT,
    session         INTEGER NOT NULL,
    created_at      REAL    NOT NULL,      -- UNIX time the row was recorded
    program_key     TEXT,                  -- hash of the program's canonical form (elm.dedup)
    duplicate_of    INTEGER,               -- status duplicate: the evaluation of the same program
    variant         TEXT,                  -- the mutator's variant that wrote it, if it has variants
    island          INTEGER                -- the island it was written for (island model)
);
CREATE INDEX IF NOT EXISTS evaluations_status ON evaluations(status);
CREATE INDEX IF NOT EXISTS evaluations_cell ON evaluations(cell);
CREATE TABLE IF NOT EXISTS sessions (
    id                  INTEGER PRIMARY KEY,
    started_at          REAL NOT NULL,
    heartbeat_at        REAL NOT NULL,
    elapsed_s           REAL NOT NULL DEFAULT 0,
    evaluations_at_start INTEGER NOT NULL,
    end_reason          TEXT,              -- NULL while running or after a crash
    pid                 INTEGER,
    host                TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    evaluations    INTEGER PRIMARY KEY,    -- finished evaluations when the snapshot was taken
    wall_s         REAL NOT NULL,          -- run wall time, summed over sessions
    time           REAL NOT NULL,          -- UNIX time
    num_elites     INTEGER NOT NULL,
    coverage       REAL NOT NULL,
    qd_score       REAL NOT NULL,
    norm_qd_score  REAL NOT NULL,
    max_fitness    REAL,
    mean_fitness   REAL,
    tokens         INTEGER NOT NULL DEFAULT 0,
    in_flight      INTEGER,                -- the driver's in-flight batch limit at that moment
    mutator_util   REAL,                   -- share of time mutator actors were busy since the last snapshot
    evaluator_util REAL                    -- same for evaluator actors
);
CREATE TABLE IF NOT EXISTS operators (
    evaluations INTEGER NOT NULL,          -- evaluations when the shares were set
    operator    TEXT    NOT NULL,          -- "mutator" or "mutator/variant"
    weight      REAL    NOT NULL,          -- its share of the children from then on
    children    INTEGER NOT NULL,          -- its children so far
    reward_rate REAL,                      -- its recent archive improvement per second of compute
    PRIMARY KEY (evaluations, operator)
);
CREATE TABLE IF NOT EXISTS islands (
    evaluations INTEGER NOT NULL,
    island      INTEGER NOT NULL,
    num_elites  INTEGER NOT NULL,
    qd_score    REAL    NOT NULL,
    max_fitness REAL,
    PRIMARY KEY (evaluations, island)
);
CREATE TABLE IF NOT EXISTS island_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    evaluations INTEGER NOT NULL,          -- evaluations when it happened
    kind        TEXT    NOT NULL,          -- "migrate" or "reset"
    source      INTEGER,                   -- island the elites came from
    target      INTEGER NOT NULL,          -- island that received them (reset: the island emptied)
    elite_ids   TEXT    NOT NULL           -- JSON list of evaluation ids copied into target
);
CREATE TABLE IF NOT EXISTS adapters (
    id          INTEGER PRIMARY KEY,       -- the round: 1, 2, ... (continues across resumes)
    lane        TEXT    NOT NULL,          -- the operator whose model was trained
    status      TEXT    NOT NULL,          -- elm.types.AdapterStatus value
    version     TEXT,                      -- recorded as model_version by the children it writes
    path        TEXT,                      -- the adapter's directory (with its elm_adapter.json)
    evaluations INTEGER NOT NULL,          -- evaluations when the round started
    last_id     INTEGER NOT NULL,          -- newest evaluation id the round could learn from
    examples    INTEGER,                   -- training pairs exported for the round
    started_at  REAL    NOT NULL,          -- UNIX time
    seconds     REAL,                      -- wall time of the round (export, training, saving)
    error       TEXT,                      -- why a round failed or was abandoned
    info        TEXT                       -- JSON: the trainer's result (steps, losses, cost)
);
"""

#: columns added by schema version 2 (added to a version-1 store when it is opened for writing)
_V2_COLUMNS = (("program_key", "TEXT"), ("duplicate_of", "INTEGER"), ("variant", "TEXT"), ("island", "INTEGER"))


class StoreError(RuntimeError):
    """The run store cannot be opened or written (message says why and what to do)."""


@dataclass(frozen=True)
class EvaluationRecord:
    """One row of ``evaluations``; lists/dicts are stored as JSON."""

    id: int
    parent_ids: tuple[int, ...]
    mutator: str
    generation: int
    source: str | None
    status: str
    fitness: float | None = None
    descriptor: tuple[float, ...] | None = None
    cell: int | None = None
    archive_status: str | None = None
    mutation_status: str | None = None
    error: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    model_s: float = 0.0
    run_s: float = 0.0
    score_s: float = 0.0
    eval_s: float = 0.0
    worker: str | None = None
    created_at: float = 0.0
    program_key: str | None = None
    duplicate_of: int | None = None
    variant: str | None = None
    island: int | None = None


_RECORD_FIELDS = [f.name for f in fields(EvaluationRecord)]
_INSERT_SQL = (
    f"INSERT INTO evaluations ({', '.join(_RECORD_FIELDS)}, session) "
    f"VALUES ({', '.join('?' for _ in _RECORD_FIELDS)}, ?)"
)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


#: one encoder for every row: json.dumps with a ``default`` builds a new encoder per call (2-3x the cost)
_ENCODER = json.JSONEncoder(default=_json_default, allow_nan=True)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


#: what ``repr`` of a list of finite Python ints and floats can contain; ``nan``, ``inf``, ``True``,
#: numpy scalars (``np.float64(...)``) and anything else cannot match, and take the general path
_PLAIN_NUMBERS = re.compile(r"\[[-+0-9.e, ]*\]")


def _json_numbers(values: Sequence[float]) -> str:
    """JSON list of numbers; a fast path for the hot insert loop (two C calls a row: the repr of a
    list of finite ints and floats is valid JSON as it is)."""
    text = repr(list(values))
    if _PLAIN_NUMBERS.fullmatch(text):
        return text
    return _dumps(list(values))


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _row_values(record: EvaluationRecord, session: int) -> tuple:
    return (
        record.id,
        _json_numbers(record.parent_ids),
        record.mutator,
        record.generation,
        record.source,
        str(record.status),
        _finite_or_none(record.fitness),
        None if record.descriptor is None else _json_numbers(record.descriptor),
        record.cell,
        None if record.archive_status is None else str(record.archive_status),
        record.mutation_status,
        record.error,
        _dumps(dict(record.info)) if record.info else None,
        int(record.tokens_in),
        int(record.tokens_out),
        float(record.model_s),
        float(record.run_s),
        float(record.score_s),
        float(record.eval_s),
        record.worker,
        record.created_at or time.time(),
        record.program_key,
        record.duplicate_of,
        record.variant,
        record.island,
        session,
    )


def _record_from_row(row: sqlite3.Row) -> EvaluationRecord:
    return EvaluationRecord(
        id=row["id"],
        parent_ids=tuple(json.loads(row["parent_ids"])),
        mutator=row["mutator"],
        generation=row["generation"],
        source=row["source"],
        status=row["status"],
        fitness=row["fitness"],
        descriptor=None if row["descriptor"] is None else tuple(json.loads(row["descriptor"])),
        cell=row["cell"],
        archive_status=row["archive_status"],
        mutation_status=row["mutation_status"],
        error=row["error"],
        info=json.loads(row["info"]) if row["info"] else {},
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        model_s=row["model_s"],
        run_s=row["run_s"],
        score_s=row["score_s"],
        eval_s=row["eval_s"],
        worker=row["worker"],
        created_at=row["created_at"],
        **{k: row[k] for k, _ in _V2_COLUMNS if k in row.keys()},  # a version-1 store has none
    )


def connect_readonly(path: Path, **kwargs: Any) -> sqlite3.Connection:
    """A read-only connection to ``run.db``, also where the run directory itself is read-only.

    A WAL database normally needs its ``-shm`` file, which SQLite cannot create
    in a read-only directory (a finished run on a read-only mount or owned by
    someone else). A store whose run closed cleanly has no ``-wal`` left and is
    then opened as immutable; one with a leftover ``-wal`` (its writer was
    killed) cannot be read consistently there, and the error says so.
    """
    kwargs.setdefault("timeout", 30.0)
    kwargs.setdefault("check_same_thread", False)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, **kwargs)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(
                f"cannot read {path}: its directory is read-only and the run left a write-ahead log "
                f"({wal.name}, the run was stopped without closing); copy the run directory somewhere "
                f"writable and open the copy ({exc})") from exc
        return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, **kwargs)


class RunStore:
    """Reader/writer of one run's ``run.db``.

    Use :meth:`create` for a new run, :meth:`open` to resume (writable) or
    analyse (``readonly=True``; safe while the run is still writing, thanks to
    WAL). One writer per run: a second writable open of a run whose last
    session is still heartbeating raises :class:`StoreError`.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool):
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self.session: int | None = None
        self._session_started = 0.0
        self._elapsed_before = 0.0

    @property
    def connection(self) -> sqlite3.Connection:
        """The store's SQLite connection, for read-only queries (statistics, analysis).

        Write only through :meth:`record`, :meth:`set_meta` and the session methods: they keep
        every batch in one transaction with its metrics.
        """
        return self._conn

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
        try:
            if readonly:
                conn = connect_readonly(path)
            else:
                conn = sqlite3.connect(path, timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a committed batch survives a SIGKILL of the
                # process; only a power loss can drop the last few batches.
                conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        return conn

    @classmethod
    def create(cls, run_dir: str | os.PathLike, *, meta: Mapping[str, Any]) -> RunStore:
        """Create ``run_dir/run.db`` for a new run; refuses to overwrite an existing store."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        if path.exists():
            raise StoreError(
                f"{path} already exists: this directory holds a run. Resume it with "
                f"`elm-run resume={run_dir}` (or `python run_elm.py resume=...` in a checkout), "
                f"or choose another hydra.run.dir"
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create run directory {run_dir}: {exc}") from exc
        if not os.access(run_dir, os.W_OK):
            raise StoreError(f"run directory {run_dir} is not writable; choose another hydra.run.dir")
        conn = cls._connect(path, readonly=False)
        store = cls(conn, path, readonly=False)
        conn.executescript(_SCHEMA)
        with store._transaction():
            values = {"schema_version": SCHEMA_VERSION, "created_at": time.time(), **meta}
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [(k, v if isinstance(v, str) else _dumps(v)) for k, v in values.items()],
            )
        return store

    @classmethod
    def open(cls, run_dir: str | os.PathLike, *, readonly: bool = True) -> RunStore:
        """Open an existing run (a run directory or the ``run.db`` path itself)."""
        path = Path(run_dir)
        if path.is_dir():
            path = path / DB_NAME
        if not path.exists():
            raise StoreError(
                f"no run store at {path}: expected a run directory containing {DB_NAME} "
                "(the directory a run printed at its start)"
            )
        conn = cls._connect(path, readonly=readonly)
        store = cls(conn, path, readonly=readonly)
        version = store.meta().get("schema_version")
        if version is None:
            raise StoreError(f"{path} is not an ELM run store (no schema_version in meta)")
        if int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {version}, newer than this engine's {SCHEMA_VERSION}; "
                "upgrade the engine to read it"
            )
        if int(version) < SCHEMA_VERSION and not readonly:
            store._migrate(int(version))
        return store

    def _migrate(self, version: int) -> None:
        """Bring an older store to :data:`SCHEMA_VERSION` in one transaction (new columns are NULL)."""
        def write(c):
            have = {row[1] for row in c.execute("PRAGMA table_info(evaluations)")}
            for name, kind in _V2_COLUMNS:
                if name not in have:
                    c.execute(f"ALTER TABLE evaluations ADD COLUMN {name} {kind}")
            for statement in _SCHEMA.split(";"):
                if "CREATE TABLE IF NOT EXISTS" in statement and "evaluations (" not in statement:
                    c.execute(statement)
            c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

        self._write(write, f"migration of schema version {version} to {SCHEMA_VERSION}")

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error:
                    self.conn.execute("ROLLBACK")
                    raise
            else:
                self.conn.execute("ROLLBACK")
            return False

    def _transaction(self) -> _Tx:
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
        return RunStore._Tx(self._conn)

    def _write(self, fn, what: str):
        try:
            with self._transaction() as conn:
                return fn(conn)
        except sqlite3.OperationalError as exc:
            # e.g. "database or disk is full", "attempt to write a readonly database":
            # the transaction was rolled back, so the store stays consistent.
            raise StoreError(
                f"could not write {what} to {self.path}: {exc}. Nothing of this batch was "
                "written; free disk space or fix permissions, then resume the run"
            ) from exc

    # ------------------------------------------------------------------ metadata
    def meta(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self._conn.execute("SELECT key, value FROM meta")}

    def meta_json(self, key: str, default: Any = None) -> Any:
        value = self.meta().get(key)
        return default if value is None else json.loads(value)

    def set_meta(self, **values: Any) -> None:
        self._write(
            lambda c: c.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, v if isinstance(v, str) else _dumps(v)) for k, v in values.items()],
            ),
            "metadata",
        )

    def set_program_keys(self, keys: Sequence[tuple[int, str | None]]) -> None:
        """Rewrite the ``program_key`` of evaluations, given as ``(evaluation id, key)`` pairs, in one
        transaction (a resumed run whose keys were computed under another Python version)."""
        self._write(
            lambda c: c.executemany("UPDATE evaluations SET program_key = ? WHERE id = ?",
                                    [(key, int(i)) for i, key in keys]),
            "program keys",
        )

    def config(self) -> dict:
        """The resolved config the run was started with."""
        return self.meta_json("config", {})

    # ------------------------------------------------------------------ sessions
    def begin_session(self, *, stale_after_s: float = 30.0) -> int:
        """Register this process as the run's writer; returns the session id.

        Refuses when another session heartbeated in the last ``stale_after_s``
        seconds without ending (another process still writing this run).
        """
        now = time.time()
        row = self._conn.execute(
            "SELECT id, heartbeat_at, pid, host FROM sessions WHERE end_reason IS NULL "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is not None and now - row["heartbeat_at"] < stale_after_s and not (
            row["host"] == socket.gethostname() and not _pid_alive(row["pid"])
        ):
            raise StoreError(
                f"run {self.path.parent} is being written by another process (pid {row['pid']} on "
                f"{row['host']}, last heartbeat {now - row['heartbeat_at']:.0f}s ago); stop it first"
            )
        self._elapsed_before = self.elapsed_s()
        evaluations = self.count()

        def insert(c):
            if row is not None:  # a crashed session: close it so budgets stay exact
                c.execute("UPDATE sessions SET end_reason = 'crashed' WHERE id = ?", (row["id"],))
            cur = c.execute(
                "INSERT INTO sessions(started_at, heartbeat_at, elapsed_s, evaluations_at_start, pid, host)"
                " VALUES (?, ?, 0, ?, ?, ?)",
                (now, now, evaluations, os.getpid(), socket.gethostname()),
            )
            return cur.lastrowid

        self.session = self._write(insert, "a new session")
        self._session_started = now
        return self.session

    def end_session(self, reason: str) -> None:
        if self.session is None:
            return
        now = time.time()
        self._write(
            lambda c: c.execute(
                "UPDATE sessions SET heartbeat_at = ?, elapsed_s = ?, end_reason = ? WHERE id = ?",
                (now, now - self._session_started, reason, self.session),
            ),
            "the session's end",
        )

    def elapsed_s(self) -> float:
        """Wall time spent on this run so far, summed over sessions (this one included)."""
        (total,) = self._conn.execute("SELECT COALESCE(SUM(elapsed_s), 0) FROM sessions").fetchone()
        return float(total)

    def run_wall_s(self) -> float:
        """Wall time of the run including the current session's running time."""
        if self.session is None:
            return self.elapsed_s()
        return self._elapsed_before + (time.time() - self._session_started)

    # ------------------------------------------------------------------ evaluations
    def record(self, records: Sequence[EvaluationRecord], *, metrics: Mapping[str, Any] | None = None,
               operators: Sequence[Mapping[str, Any]] = (), islands: Sequence[Mapping[str, Any]] = (),
               island_events: Sequence[Mapping[str, Any]] = ()) -> None:
        """Write a batch of finished evaluations in one transaction, with what changed with it.

        ``metrics``: an archive statistics snapshot (a ``metrics`` row). ``operators``: rows of
        ``operators`` (keys evaluations, operator, weight, children, reward_rate); ``islands``: rows
        of ``islands``; ``island_events``: rows of ``island_events`` (``elite_ids`` a list).
        """
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
        if self.session is None:
            raise StoreError("begin_session() must be called before recording evaluations")
        now = time.time()
        rows = [_row_values(r, self.session) for r in records]

        def write(c):
            c.executemany(_INSERT_SQL, rows)
            c.execute(
                "UPDATE sessions SET heartbeat_at = ?, elapsed_s = ? WHERE id = ?",
                (now, now - self._session_started, self.session),
            )
            if metrics is not None:
                c.execute(
                    "INSERT OR REPLACE INTO metrics(evaluations, wall_s, time, num_elites, coverage, "
                    "qd_score, norm_qd_score, max_fitness, mean_fitness, tokens, in_flight, mutator_util, "
                    "evaluator_util) VALUES (:evaluations, :wall_s, :time, :num_elites, :coverage, :qd_score, "
                    ":norm_qd_score, :max_fitness, :mean_fitness, :tokens, :in_flight, :mutator_util, "
                    ":evaluator_util)",
                    {"time": now, "tokens": 0, "in_flight": None, "mutator_util": None, "evaluator_util": None,
                     **metrics},
                )
            if operators:
                c.executemany("INSERT OR REPLACE INTO operators(evaluations, operator, weight, children, reward_rate) "
                              "VALUES (:evaluations, :operator, :weight, :children, :reward_rate)", operators)
            if islands:
                c.executemany("INSERT OR REPLACE INTO islands(evaluations, island, num_elites, qd_score, max_fitness) "
                              "VALUES (:evaluations, :island, :num_elites, :qd_score, :max_fitness)", islands)
            if island_events:
                c.executemany("INSERT INTO island_events(evaluations, kind, source, target, elite_ids) "
                              "VALUES (:evaluations, :kind, :source, :target, :elite_ids)",
                              [{**e, "elite_ids": _dumps(list(e["elite_ids"]))} for e in island_events])

        self._write(write, f"{len(rows)} evaluations")

    def count(self, *, status: str | None = None, mutator: str | None = None) -> int:
        """Number of evaluations, optionally only those with this status and/or mutator."""
        where, params = self._filters(status=status, mutator=mutator)
        (n,) = self._conn.execute(f"SELECT COUNT(*) FROM evaluations{where}", params).fetchone()
        return int(n)

    def count_budgeted(self) -> int:
        """Rows that count toward ``budget.evaluations``: all but duplicates (never evaluated)."""
        (n,) = self._conn.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'duplicate'").fetchone()
        return int(n)

    def record_adapter(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one ``adapters`` row (a dict of its columns; ``info`` a mapping)."""
        values = {**row, "info": _dumps(row.get("info") or {})}
        names = list(values)
        self._write(lambda c: c.execute(
            f"INSERT OR REPLACE INTO adapters ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [values[n] for n in names]), "adapter round")

    def adapters(self) -> list[dict[str, Any]]:
        """The in-run fine-tuning rounds in order (``info`` decoded); empty for a store without the table."""
        try:
            rows = self._conn.execute("SELECT * FROM adapters ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # a read-only store of an older schema
            return []
        return [{**dict(r), "info": json.loads(r["info"] or "{}")} for r in rows]

    def island_events(self) -> list[dict[str, Any]]:
        """The island model's migrations and resets in order (``elite_ids`` decoded)."""
        return [{**dict(r), "elite_ids": json.loads(r["elite_ids"])}
                for r in self._conn.execute("SELECT * FROM island_events ORDER BY id")]

    @staticmethod
    def _filters(**conditions: Any) -> tuple[str, tuple]:
        used = [(k, v) for k, v in conditions.items() if v is not None]
        if not used:
            return "", ()
        return " WHERE " + " AND ".join(f"{k} = ?" for k, _ in used), tuple(v for _, v in used)

    def max_id(self) -> int:
        """Largest evaluation id recorded, -1 when none."""
        (n,) = self._conn.execute("SELECT COALESCE(MAX(id), -1) FROM evaluations").fetchone()
        return int(n)

    def tokens_used(self) -> int:
        (n,) = self._conn.execute(
            "SELECT COALESCE(SUM(tokens_in + tokens_out), 0) FROM evaluations"
        ).fetchone()
        return int(n)

    def status_counts(self) -> dict[str, int]:
        return {
            row[0]: row[1]
            for row in self._conn.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status")
        }

    def iter_evaluations(self, *, status: str | None = None, mutator: str | None = None,
                         chunk: int = 2000) -> Iterator[EvaluationRecord]:
        """All evaluations in id order (optionally of one status and/or mutator), streamed in chunks."""
        where, params = self._filters(status=status, mutator=mutator)
        where = (where + " AND" if where else " WHERE") + " id > ?"
        last = -1
        while True:
            rows = self._conn.execute(
                f"SELECT * FROM evaluations{where} ORDER BY id LIMIT ?", (*params, last, chunk)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _record_from_row(row)
            last = rows[-1]["id"]

    def get(self, evaluation_id: int) -> EvaluationRecord | None:
        row = self._conn.execute("SELECT * FROM evaluations WHERE id = ?", (evaluation_id,)).fetchone()
        return None if row is None else _record_from_row(row)

    def metrics(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM metrics ORDER BY evaluations")]

    def sessions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM sessions ORDER BY id")]

    # ------------------------------------------------------------------ export
    def export_elites(self, path: str | os.PathLike, elites: Sequence[Any]) -> int:
        """Write archive elites as JSON Lines (one object per elite); returns how many."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for elite in elites:
                row = asdict(elite) if hasattr(elite, "__dataclass_fields__") else dict(elite)
                fh.write(_dumps(row) + "\n")
        os.replace(tmp, path)  # never leave a half-written export behind
        return len(elites)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
