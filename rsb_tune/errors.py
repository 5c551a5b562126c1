"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["UserError", "ConfigError", "DataError", "StudyError", "StorageFull", "StoreUnreachable", "Interrupted", "suggest"]


class UserError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A trial config, recipe, space file or ``--set`` value is invalid."""


class DataError(UserError):
    """A dataset path or its layout is invalid."""


class StudyError(UserError, ValueError):
    """A study directory is missing, locked, or its files are corrupt; the message names the
    file. The one study error of the engine and of ``analysis`` (a ``ValueError`` too, as the
    analysis functions raise for bad tables)."""


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
