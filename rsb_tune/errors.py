"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

import contextlib
import contextvars
import difflib
from typing import Any, Iterable, Iterator

from analysis.contract import StudyError as _StudyFileError

__all__ = ["UserError", "ConfigError", "DataError", "StudyError", "StorageFull", "StoreUnreachable", "Interrupted", "suggest", "arg", "spoken_as_flags"]


class UserError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A trial config, recipe, space file or ``--set`` value is invalid."""


class DataError(UserError):
    """A dataset path or its layout is invalid."""


class StudyError(UserError, _StudyFileError):
    """A study directory is missing, locked, or its files are corrupt; the message names the
    file. A user error, and :class:`analysis.StudyError` (a ``ValueError``, as the analysis
    functions raise for bad files and tables): who catches the analysis's error catches this."""


class StorageFull(StudyError):
    """A write to the study failed (no space left, a quota, a read-only or vanished file system):
    the run stopped before recording anything out of order; ``resume`` continues it once the
    storage takes writes again. Exit code 1: the study did not finish, the input was fine."""

    exit_code = 1


class StoreUnreachable(UserError):
    """The object store did not answer in time. A request of its client is still hanging in a
    thread that the interpreter's exit would wait for (pyarrow finalises its S3 client at
    exit), so the CLI exits at once after printing this."""


class Interrupted(KeyboardInterrupt):
    """A study's run was stopped (Ctrl-C, SIGTERM) before its trials finished; ``study`` names
    it, so that the message can say how to continue."""

    def __init__(self, study: str):
        super().__init__(study)
        self.study = study


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """'; did you mean X?' for the closest valid names, or '' when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# --------------------------------------------------------------------------- how a message names an argument

_AS_FLAGS: contextvars.ContextVar[bool] = contextvars.ContextVar("rsb_tune_errors_as_flags", default=False)
_NO_VALUE = object()


def arg(name: str, value: Any = _NO_VALUE, *, flag: str | None = None) -> str:
    """The argument ``name`` (a Python parameter) as the caller spells it, for a message.

    From Python: ``storage=`` (with ``value``: ``storage='/x'``); from the command line, inside
    :func:`spoken_as_flags`: ``--storage`` (``--storage /x``). ``flag`` is the flag where it is
    not ``--`` and the name with dashes (``overrides`` is ``--set``)."""
    if _AS_FLAGS.get():
        spelled = flag or "--" + name.replace("_", "-")
        return spelled if value is _NO_VALUE else f"{spelled} {value}"
    return f"{name}=" if value is _NO_VALUE else f"{name}={value!r}"


@contextlib.contextmanager
def spoken_as_flags() -> Iterator[None]:
    """Within it, :func:`arg` spells arguments as flags: the CLI runs its commands inside it,
    so the same check says ``--storage`` on the command line and ``storage=`` in Python."""
    token = _AS_FLAGS.set(True)
    try:
        yield
    finally:
        _AS_FLAGS.reset(token)
