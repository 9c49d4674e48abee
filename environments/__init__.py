"""Fitness domains: each module defines one :class:`elm.Environment` subclass."""

from environments.circle_packing import CirclePacking

__all__ = ["CirclePacking"]
