"""Errors raised by the engine: one base class so callers can catch everything with a clear message."""

from __future__ import annotations


class RCAError(Exception):
    """Base class of every error the engine raises on bad input (message is meant for the user)."""


class GraphError(RCAError):
    """The causal graph is unusable: a cycle, no nodes, a malformed edge list."""


class UnknownNodeError(GraphError, KeyError):
    """A node (target, mechanism key, sample column) is not in the causal graph."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(RCAError):
    """The data does not fit the graph: missing columns, non-numeric values, NaNs."""


class NotEnoughDataError(DataError):
    """Too few training rows to fit the mechanisms reliably."""


class MechanismError(RCAError):
    """An unknown mechanism name, or a mechanism that does not fit the node (e.g. 'empirical' on a non-root)."""
