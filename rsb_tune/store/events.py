"""A trial's event log (``events/<trial>.jsonl``): its one reader.

The writers are in :mod:`rsb_tune.runner.lifecycle` (one function per kind of event); every reader of
a study's events (the status, the tables, resume, the browser) reads them through here, so a
trial's status is decided in one place (:func:`trial_state`).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from analysis import contract as C

__all__ = ["parse_event_lines", "read_events", "trial_state"]


def parse_event_lines(lines) -> list[dict[str, Any]]:
    """The event records of an event log's lines (str or bytes); a torn line is skipped."""
    out = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def read_events(study, trial_id: str) -> list[dict[str, Any]]:
    """A trial's event records (``study``: a :class:`rsb_tune.store.directory.StudyDir`); a line torn by a
    crash mid-write is skipped (the trial re-reports that epoch when it continues)."""
    path = study.events_dir / f"{trial_id}.jsonl"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return parse_event_lines(text.splitlines())


def trial_state(events: list[Mapping[str, Any]]) -> tuple[str, dict[int, Mapping[str, Any]], Mapping[str, Any] | None]:
    """(status, {epoch: last result of that epoch}, last error event) of one trial's log.

    status: ``pending`` (no event), ``running``, or one of :data:`analysis.contract.FINISHED`.
    """
    by_epoch: dict[int, Mapping[str, Any]] = {}
    status, error = (C.PENDING if not events else C.RUNNING), None
    for ev in events:
        kind = ev.get("type")
        if kind == "result":
            by_epoch[int(ev["epoch"])] = ev
            status = ev.get("status", C.RUNNING)
            if status == C.RUNNING:
                error = None
        elif kind == "error":
            error = ev
            status = C.ERROR if ev.get("final") else C.RUNNING
        elif kind == "restart":
            status, error = C.RUNNING, None
        elif kind in (C.STOPPED, C.ABANDONED):
            status = kind
    return status, by_epoch, error
