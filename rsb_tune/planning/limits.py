"""The cap on the size of a study, checked before anything is expanded.

:data:`MAX_TRIALS` is the default (``--max-trials`` / ``max_trials=`` raise it; both are made
from here, re-exported by :mod:`rsb_tune.options` beside the run options). It lives in planning,
the layer that counts trials, so that planning imports nothing above it.
"""

from __future__ import annotations

from typing import Any

from rsb_tune.errors import ConfigError, arg

__all__ = ["MAX_TRIALS", "check_size", "check_max_trials"]

MAX_TRIALS = 100_000  # the most trials a study may plan unless max_trials= / --max-trials raises it


def check_size(n: int, what: str, max_trials: int | None = MAX_TRIALS) -> None:
    """A ConfigError naming ``what`` when a study would plan ``n`` trials, more than ``max_trials``
    (None: no cap). Called with the count computed before anything is expanded (``--n``, a grid's
    product of axis lengths times its seeds, a search's ``num_samples``, ``seeds: {n: N}``), so a
    typo of a few zeros is one line, not minutes of planning and gigabytes of memory."""
    if max_trials is not None and n > max_trials:
        raise ConfigError(f"{what}: {n:,} trials, more than the cap of {max_trials:,} per study; raise it with {arg('max_trials')} if you mean it")


def check_max_trials(value: Any) -> int:
    """``max_trials`` when it is an integer >= 1, else a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{arg('max_trials', value)}: the cap of trials per study is an integer >= 1")
    return value

