"""Exceptions raised by the runtime (pools and coded jobs)."""

from __future__ import annotations

from collections.abc import Iterable


class NotEnoughWorkers(RuntimeError):
    """Too few workers answered (or too many died) to decode a round.

    Parameters
    ----------
    message : str
        What happened, with the numbers.
    dead : iterable of int
        Workers seen dead during the round.
    answered : iterable of int
        Workers whose results arrived.
    """

    def __init__(self, message: str, *, dead: Iterable[int] = (), answered: Iterable[int] = ()):
        super().__init__(message)
        self.dead = sorted(set(dead))
        self.answered = sorted(set(answered))


class PoolClosed(RuntimeError):
    """The pool was used after ``close()``."""
