"""What a run prints when it stops (and returns to callers of :func:`elm.runner.run`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RunSummary"]


@dataclass(frozen=True)
class RunSummary:
    run_dir: str
    evaluations: int
    new_evaluations: int
    status_counts: Mapping[str, int]
    num_elites: int
    coverage: float
    qd_score: float
    max_fitness: float | None
    seed_coverage: float | None
    seed_qd_score: float | None
    stop_reason: str
    elapsed_s: float
    mutator_stats: str = ""  # per-mutator table (elm.stats.format_stats), also in meta.mutator_stats

    def format(self) -> str:
        best = "n/a" if self.max_fitness is None else f"{self.max_fitness:.6g}"
        lines = [
            f"run directory   {self.run_dir}",
            f"stopped         {self.stop_reason} after {self.evaluations} evaluations "
            f"({self.new_evaluations} this session, {self.elapsed_s:.1f}s)",
            f"best fitness    {best}",
            f"elites          {self.num_elites}  coverage {self.coverage:.4f}  QD score {self.qd_score:.6g}",
        ]
        if self.seed_coverage is not None:
            lines.append(f"seeds alone     coverage {self.seed_coverage:.4f}  QD score {self.seed_qd_score:.6g}")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.status_counts.items()))
        lines.append(f"statuses        {counts}")
        if self.mutator_stats:
            lines.append("per mutator (rates are fractions of its children):")
            lines.extend("  " + line for line in self.mutator_stats.splitlines())
        return "\n".join(lines)
