"""Dask's noise about comms that closed while the cluster's own pools stop: dropped.

When the cluster stops, the scheduler's last messages to nannies that already
left fail with ``CommClosedError``: in tasks nobody awaits (asyncio prints
their tracebacks when they are collected) and in Dask's error logs.  That is
noise on a path that worked; every other exception and log record still goes
through.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

_CLOSED_COMM_WORDS = ("CommClosedError", "StreamClosedError", "Stream is closed")


def is_closed_comm(exc: BaseException | None) -> bool:
    while exc is not None:
        if type(exc).__name__ in ("CommClosedError", "StreamClosedError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def quiet_closed_comms(pool: Any) -> None:
    """On the pool's event loop, drop "Task exception was never retrieved" for closed comms;
    every other exception still goes to the handler there was (or the default one)."""
    loop = getattr(getattr(getattr(pool, "client", None), "loop", None), "asyncio_loop", None)
    if loop is None:
        return
    previous = loop.get_exception_handler()

    def handler(lp: Any, context: dict[str, Any]) -> None:
        if is_closed_comm(context.get("exception")):
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)


class _DropClosedComms(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and is_closed_comm(record.exc_info[1]):
            return False
        return not any(w in text for w in _CLOSED_COMM_WORDS)


@contextlib.contextmanager
def closing_quietly() -> Iterator[None]:
    """While our own pools stop, Dask's errors about comms that closed are expected: drop them."""
    flt = _DropClosedComms()
    names = (
        "distributed.scheduler",
        "distributed.batched",
        "distributed.core",
        "distributed.nanny",
        "distributed.worker",
        "distributed.comm",
        "distributed.client",
        "distributed.deploy.ssh",
        "distributed.deploy.spec",
        "asyncio",
    )
    loggers = [logging.getLogger(n) for n in names]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)
