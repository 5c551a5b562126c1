"""The library's messages go through :mod:`logging` (the logger ``rsb_tune``), never ``print``.

As Optuna does, the logger has a handler of its own until the application configures logging:
INFO and above on the standard error of the moment (so a notebook and ``pytest``'s capture see
them), warnings and errors prefixed as the command line words them (``rsb-tune: warning: ...``).
``logging.getLogger("rsb_tune").setLevel(logging.WARNING)`` keeps a notebook quiet;
``propagate`` to the root logger is off while this handler is in place, so nothing is printed twice.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

__all__ = ["logger", "timing", "timed"]

logger = logging.getLogger("rsb_tune")
# Where a study's time goes: one DEBUG record per phase (dataset decode, model check, warm-up,
# Ray's start, the trials, each table write), with ``phase``, ``t0`` and ``t1`` (epoch seconds)
# as record attributes. Off unless the application sets this logger's level to DEBUG
# (benchmarks/study_overhead.py does, with a handler of its own).
timing = logging.getLogger("rsb_tune.timing")


@contextlib.contextmanager
def timed(phase: str):
    """Time the block as ``phase`` on :data:`timing` (free when that logger is off)."""
    if not timing.isEnabledFor(logging.DEBUG):
        yield
        return
    t0 = time.time()
    try:
        yield
    finally:
        t1 = time.time()
        timing.debug("%s: %.3f s", phase, t1 - t0, extra={"phase": phase, "t0": t0, "t1": t1})


class _Stderr(logging.StreamHandler):
    """A stream handler on ``sys.stderr`` as it is when a record is emitted (not at import)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it; the property always answers sys.stderr
        pass


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"rsb-tune: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"rsb-tune: warning: {message}"
        return message


if not logger.handlers:
    _handler = _Stderr()
    _handler.setFormatter(_Format())
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
