"""Worker processes on this machine, payloads in shared memory: :class:`LocalPool`."""

from __future__ import annotations

from .pool import LocalPool

__all__ = ["LocalPool"]
