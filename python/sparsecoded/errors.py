"""Exceptions raised by the runtime (pools and coded jobs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
    partial : RoundResult, optional
        What did arrive, when the round ended because every live worker had
        answered or died (None after a timeout, when some may still answer).
        A coded job decodes it when the results determine the answer but
        ``enough`` held out for a better-conditioned system.
    """

    def __init__(
        self,
        message: str,
        *,
        dead: Iterable[int] = (),
        answered: Iterable[int] = (),
        partial: Any = None,
    ):
        super().__init__(message)
        self.dead = sorted(set(dead))
        self.answered = sorted(set(answered))
        self.partial = partial


class RoundTimeout(NotEnoughWorkers, TimeoutError):
    """A round ran out of time before enough workers answered.

    Both a :class:`NotEnoughWorkers` (the round could not be decoded) and a
    :class:`TimeoutError` (``except TimeoutError`` catches it).
    """


class PoolClosed(RuntimeError):
    """The pool was used after ``close()``."""
