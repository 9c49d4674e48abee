"""Operator choice: which operator (mutator lane, or one of its variants) writes the next batch.

Every operator has a *share* of the children. Without adaptation the shares are the configured
weights; with ``search.bandit.enabled`` they follow each operator's recent reward rate: the archive
improvement its children brought (what they added to the QD score, :attr:`AddOutcome.improvement`)
per second of compute they cost (model seconds plus sandbox seconds), with exponential forgetting
(``half_life`` children), a floor that keeps every operator in play, and a temperature. Batches are
issued by *stride scheduling*: each operator earns credit at its share, the available operator with
the most credit goes next, so over time the children follow the shares even though every batch
belongs to one operator; an operator that cannot take work (its actors busy) does not hold back
the others (the scheduler is work-conserving).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from elm.config import BanditConfig

__all__ = ["Operator", "OperatorChooser"]


@dataclass(frozen=True)
class Operator:
    """One arm: ``name`` is ``"lane"`` or ``"lane/variant"``; ``prior`` its configured weight."""

    name: str
    lane: str
    variant: str | None
    prior: float


class OperatorChooser:
    """Shares and the stride schedule of a run's operators (see the module docstring).

    ``operators``: at least one, priors > 0 (they are normalised). All state is plain numbers, so
    :meth:`state` / :meth:`load_state` round-trip it through JSON.
    """

    def __init__(self, operators: Sequence[Operator], cfg: BanditConfig) -> None:
        if not operators:
            raise ValueError("there must be at least one operator")
        if len({o.name for o in operators}) != len(operators):
            raise ValueError(f"operator names must be unique, got {[o.name for o in operators]}")
        if any(not (o.prior > 0 and math.isfinite(o.prior)) for o in operators):
            raise ValueError(f"operator weights must be finite and > 0, got {[o.prior for o in operators]}")
        if not 0 <= cfg.floor < 1:
            raise ValueError(f"search.bandit.floor must be in [0, 1), got {cfg.floor}")
        if cfg.half_life < 1 or cfg.warmup < 0 or not cfg.temperature > 0:
            raise ValueError("search.bandit: half_life must be >= 1, warmup >= 0 and temperature > 0")
        self.cfg = cfg
        self.operators = list(operators)
        total = sum(o.prior for o in operators)
        self._prior = {o.name: o.prior / total for o in operators}
        self._by_name = {o.name: o for o in operators}
        self._reward = {o.name: 0.0 for o in operators}  # decayed sums
        self._cost = {o.name: 0.0 for o in operators}
        self._children = {o.name: 0 for o in operators}
        self._credit = {o.name: 0.0 for o in operators}
        self._decay = 0.5 ** (1.0 / cfg.half_life)
        self._shares = dict(self._prior)

    # ------------------------------------------------------------------ shares
    @property
    def adaptive(self) -> bool:
        return self.cfg.enabled and len(self.operators) > 1

    def shares(self) -> dict[str, float]:
        """Current share of each operator (sums to 1)."""
        return dict(self._shares)

    def rate(self, name: str) -> float | None:
        """Recent improvement per second of compute of ``name`` (None before any cost was measured)."""
        cost = self._cost[name]
        return self._reward[name] / cost if cost > 0 else None

    def children(self, name: str) -> int:
        return self._children[name]

    def feedback(self, name: str, improvements: Iterable[float], costs: Iterable[float]) -> None:
        """Record the children of one batch of operator ``name``: each child's archive improvement
        (>= 0) and its compute cost in seconds; then recompute the shares."""
        decay = self._decay
        reward, cost, n = self._reward[name], self._cost[name], 0
        for gain, seconds in zip(improvements, costs):
            reward = reward * decay + max(0.0, float(gain))
            cost = cost * decay + max(0.0, float(seconds))
            n += 1
        self._reward[name], self._cost[name] = reward, cost
        self._children[name] += n
        if self.adaptive:
            self._shares = self._compute_shares()

    def _compute_shares(self) -> dict[str, float]:
        k = len(self.operators)
        rates = {}
        for o in self.operators:
            rate = self.rate(o.name)
            if self._children[o.name] < self.cfg.warmup or rate is None:
                rates[o.name] = None
            else:
                rates[o.name] = rate
        measured = [r for r in rates.values() if r is not None]
        if not measured:
            return dict(self._prior)
        # operators still warming up keep their configured share; the measured ones split the rest
        # by rate ** (1 / temperature), each at least floor / k
        warming = {n for n, r in rates.items() if r is None}
        fixed = sum(self._prior[n] for n in warming)
        scale = max(measured) or 1.0
        powered = {n: (r / scale) ** (1.0 / self.cfg.temperature) for n, r in rates.items() if r is not None}
        total = sum(powered.values())
        shares = {n: self._prior[n] for n in warming}
        rest = 1.0 - fixed
        for n, p in powered.items():
            shares[n] = rest * (p / total if total > 0 else 1.0 / len(powered))
        floor = self.cfg.floor / k
        lifted = {n: max(floor, s) for n, s in shares.items()}
        norm = sum(lifted.values())
        return {n: s / norm for n, s in lifted.items()}

    # ------------------------------------------------------------------ scheduling
    def next(self, available: Iterable[str], size: Mapping[str, int] | None = None) -> str | None:
        """The operator to issue the next batch from, among ``available`` names (None if none).

        Stride scheduling: every operator earns credit at its share; the available one with the
        most credit wins and pays for its batch (``size[name]`` children, default 1) when
        :meth:`issued` is called. Credit is capped so an operator that was busy for a long time
        does not then take every slot.
        """
        candidates = [n for n in available if n in self._by_name]
        if not candidates:
            return None
        return max(candidates, key=lambda n: (self._credit[n], self._shares[n], n))

    def issued(self, name: str, n: int) -> None:
        """``n`` children of ``name`` were issued: every operator earns ``share * n``; ``name`` pays ``n``.

        Credit stays within +-4 batches: an operator that was busy for long neither takes every slot
        afterwards nor leaves the one that stood in for it in debt."""
        cap = 4.0 * max(n, 1)
        for other, share in self._shares.items():
            self._credit[other] = min(cap, self._credit[other] + share * n)
        self._credit[name] = max(-cap, self._credit[name] - n)

    # ------------------------------------------------------------------ persistence
    def rows(self, evaluations: int) -> list[dict]:
        """Rows of the store's ``operators`` table describing the current shares."""
        return [{"evaluations": evaluations, "operator": o.name, "weight": self._shares[o.name],
                 "children": self._children[o.name], "reward_rate": self.rate(o.name)} for o in self.operators]
