"""Per-mutator statistics of a run, computed from its store's ``evaluations`` table.

Every child is one row with its mutator, the mutator's status
(``mutation_status``), the evaluation status, the archive's verdict, tokens
and model seconds, so the statistics are one ``GROUP BY`` away and stay
exact across resumes. Rates are fractions of the mutator's proposals.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from elm.types import SEED_MUTATOR as _SEED

__all__ = ["MutatorStats", "format_stats", "merge_versions", "mutator_stats"]


@dataclass(frozen=True)
class MutatorStats:
    """Counts for one mutator (``Proposal.mutator``); seeds are not a mutator.

    ``programs``: children the mutator turned into a program (diff applied,
    middle spliced, body written...: mutation status ``ok`` or
    ``syntax_error``); ``parsed``: of those, the ones that passed
    ``ast.parse``; ``valid``: evaluated ``ok``; ``inserted``: entered the
    archive (``new_cell`` or ``improved``); ``new_cells``: opened a cell;
    ``duplicates``: children that repeated a program already evaluated in the run
    (not evaluated again; not counted in the evaluation budget).
    ``model_s`` is the sum of the children's model seconds; ``statuses``
    counts mutation statuses. ``model_version`` is set in per-version statistics
    (``mutator_stats(..., by_version=True)``): the weights that wrote the children
    (``info.mutation.model_version``; ``None`` for mutators without a model).
    """

    mutator: str
    proposals: int
    programs: int
    parsed: int
    valid: int
    inserted: int
    new_cells: int
    duplicates: int
    tokens_in: int
    tokens_out: int
    model_s: float
    statuses: Mapping[str, int] = field(default_factory=dict)
    model_version: str | None = None

    def _rate(self, n: int) -> float:
        return n / self.proposals if self.proposals else 0.0

    @property
    def apply_rate(self) -> float:
        """Parse/apply rate: fraction of proposals that became a program."""
        return self._rate(self.programs)

    @property
    def parse_rate(self) -> float:
        return self._rate(self.parsed)

    @property
    def valid_rate(self) -> float:
        return self._rate(self.valid)

    @property
    def insertion_rate(self) -> float:
        return self._rate(self.inserted)

    @property
    def new_cell_rate(self) -> float:
        return self._rate(self.new_cells)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per model second (0 for mutators without a model)."""
        return self.tokens_out / self.model_s if self.model_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["statuses"] = dict(self.statuses)
        for rate in ("apply_rate", "parse_rate", "valid_rate", "insertion_rate", "new_cell_rate", "tokens_per_s"):
            d[rate] = getattr(self, rate)
        return d


_VERSION = "json_extract(info, '$.mutation.model_version')"
_QUERY = """
SELECT mutator, {version} AS version,
       COUNT(*) AS proposals,
       SUM(mutation_status IN ('ok', 'syntax_error')) AS programs,
       SUM(mutation_status = 'ok') AS parsed,
       SUM(status = 'ok') AS valid,
       SUM(archive_status IN ('new_cell', 'improved')) AS inserted,
       SUM(archive_status = 'new_cell') AS new_cells,
       SUM(status = 'duplicate') AS duplicates,
       SUM(tokens_in) AS tokens_in,
       SUM(tokens_out) AS tokens_out,
       SUM(model_s) AS model_s
FROM evaluations WHERE mutator != ? GROUP BY 1, 2 ORDER BY 1, 2
"""


def mutator_stats(source: Any, *, by_version: bool = False) -> list[MutatorStats]:
    """Statistics per mutator of a run, by name (``by_version``: per mutator and model version).

    ``source``: an open :class:`elm.store.RunStore`, or a ``sqlite3.Connection`` to a run store
    (the analysis API's read-only one). Seeds are left out. Per version, a language model's
    children are split by the weights that wrote them (``info.mutation.model_version``: ``base``
    or a fine-tuned adapter's version), in version order.
    """
    conn = source if isinstance(source, sqlite3.Connection) else source.connection
    version = _VERSION if by_version else "NULL"
    statuses: dict[tuple, dict[str, int]] = {}
    for row in conn.execute(f"SELECT mutator, {version}, COALESCE(mutation_status, status), COUNT(*) "
                            "FROM evaluations WHERE mutator != ? GROUP BY 1, 2, 3", (_SEED,)):
        statuses.setdefault((row[0], row[1]), {})[row[2]] = row[3]
    return [
        MutatorStats(mutator=r[0], proposals=r[2], programs=r[3] or 0, parsed=r[4] or 0, valid=r[5] or 0,
                     inserted=r[6] or 0, new_cells=r[7] or 0, duplicates=r[8] or 0, tokens_in=r[9] or 0,
                     tokens_out=r[10] or 0, model_s=float(r[11] or 0.0), statuses=statuses.get((r[0], r[1]), {}),
                     model_version=None if r[1] is None else str(r[1]))
        for r in conn.execute(_QUERY.format(version=version), (_SEED,))
    ]


def merge_versions(stats: list[MutatorStats]) -> list[MutatorStats]:
    """Per-version statistics summed per mutator: what ``mutator_stats(source)`` returns, from the rows of
    ``mutator_stats(source, by_version=True)`` (every count is a sum over the children), without a
    second pass over the store. Mutators in name order, as ``mutator_stats`` gives them."""
    merged: dict[str, MutatorStats] = {}
    for s in stats:
        m = merged.get(s.mutator)
        if m is None:
            merged[s.mutator] = replace(s, statuses=dict(s.statuses), model_version=None)
            continue
        statuses = dict(m.statuses)
        for status, n in s.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
        merged[s.mutator] = replace(
            m, proposals=m.proposals + s.proposals, programs=m.programs + s.programs, parsed=m.parsed + s.parsed,
            valid=m.valid + s.valid, inserted=m.inserted + s.inserted, new_cells=m.new_cells + s.new_cells,
            duplicates=m.duplicates + s.duplicates, tokens_in=m.tokens_in + s.tokens_in,
            tokens_out=m.tokens_out + s.tokens_out, model_s=m.model_s + s.model_s, statuses=statuses)
    return [merged[name] for name in sorted(merged)]


def format_stats(stats: list[MutatorStats]) -> str:
    """A fixed-width table, one line per mutator (for logs and the run summary); per-version statistics
    get a ``model`` column (``-`` for a mutator without a model)."""
    if not stats:
        return ""
    versions = any(s.model_version is not None for s in stats)  # per-version statistics: a model column
    lines = [f"{'mutator':<14}" + (f"{'model':<20}" if versions else "")
             + f"{'children':>9}{'program':>9}{'parses':>8}{'valid':>8}{'inserted':>9}"
             f"{'new cell':>9}{'dupl.':>7}{'tokens out':>11}{'model s':>9}"]
    for s in stats:
        model = f"{(s.model_version or '-')[:19]:<20}" if versions else ""
        lines.append(f"{s.mutator[:13]:<14}{model}{s.proposals:>9}{s.apply_rate:>9.1%}{s.parse_rate:>8.1%}"
                     f"{s.valid_rate:>8.1%}{s.inserted:>9}{s.new_cells:>9}{s.duplicates:>7}{s.tokens_out:>11}"
                     f"{s.model_s:>9.1f}")
    return "\n".join(lines)

