"""A trial's event log (``events/<trial>.jsonl``): its one reader.

The writers are in :mod:`rsb_tune.runner.lifecycle` (one function per kind of event); every reader of
a study's events (the status, the tables, resume, the browser) reads them through here, so a
trial's status is decided in one place (:func:`trial_state`).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from analysis import contract as C

__all__ = ["EventLog", "damage_line", "parse_event_lines", "read_events", "trial_state"]


class EventLog(list):
    """A log's event records (a list), and ``damaged``: (line number, what is wrong) of each line
    that was skipped because it is not an event (a torn line, which a crash leaves, is not)."""

    damaged: list[tuple[int, str]]

    def __init__(self, events=(), damaged=()):
        super().__init__(events)
        self.damaged = list(damaged)


def _problem(event: Any) -> str | None:
    """What makes a parsed line not an event record, or None."""
    if not isinstance(event, dict):
        return f"not an event record (a JSON {type(event).__name__})"
    if event.get("type") == "result":
        epoch = event.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            return f"epoch {_short(epoch)} is not an integer"
        status = event.get("status", C.RUNNING)
        if not isinstance(status, str) or status not in (C.RUNNING, *C.FINISHED):
            return f"status {_short(status)} is not a trial status"
    return None


def _short(value: Any) -> str:
    """A value for a message: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_event_lines(lines) -> EventLog:
    """The event records of an event log's lines (str or bytes, each decoded alone). A torn line
    (not JSON) is skipped; so is a line that is not UTF-8 text (but the last, which may be torn
    mid-character) or whose record has fields of the wrong type, and it is counted in the
    result's ``damaged``: the good lines around it stand."""
    out, damaged = EventLog(), []
    lines = list(lines)
    for i, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                if i < len(lines):
                    damaged.append((i, "not UTF-8 text"))
                continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        except RecursionError:
            damaged.append((i, "nested too deeply"))
            continue
        problem = _problem(event)
        if problem:
            damaged.append((i, problem))
        else:
            out.append(event)
    out.damaged = damaged
    return out


def damage_line(trial_id: str, events: Any) -> str | None:
    """One line naming the first damaged line of a trial's log (``events``: an :class:`EventLog`),
    or None when none is."""
    damaged = getattr(events, "damaged", None)
    if not damaged:
        return None
    line, what = damaged[0]
    if line is None:  # the whole file
        return f"events/{trial_id}.jsonl: {what}"
    more = f" (and {len(damaged) - 1} more damaged lines)" if len(damaged) > 1 else ""
    return f"events/{trial_id}.jsonl line {line}: {what}, skipped{more}"


def read_events(study, trial_id: str) -> EventLog:
    """A trial's event records (``study``: a :class:`rsb_tune.store.directory.StudyDir`); a line torn by a
    crash mid-write is skipped (the trial re-reports that epoch when it continues), and so is a
    damaged line (:func:`parse_event_lines`)."""
    from rsb_tune.errors import StudyError

    path = study.events_dir / f"{trial_id}.jsonl"
    try:
        data = study.read_bytes(path)
    except FileNotFoundError:
        return EventLog()
    except StudyError:  # a link out of the study: not read, and the study is damaged
        return refused_log()
    lines = data.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    return parse_event_lines(lines)


def refused_log() -> EventLog:
    """The event log of a file that links out of the study directory: not read, damaged as a whole."""
    return EventLog(damaged=[(None, "a link leading out of the study directory, refused")])


def diverged_reason(by_epoch: Mapping[int, Mapping[str, Any]]) -> str | None:
    """Why a trial diverged, from its last result: ``"diverged at epoch 3: train_loss nan"``
    (None when its last result is not a diverged one)."""
    if not by_epoch:
        return None
    epoch = max(by_epoch)
    last = by_epoch[epoch]
    if last.get("status") != C.DIVERGED:
        return None
    loss = last.get("train_loss")
    shown = "not recorded" if loss is None else str(loss).lower()
    return f"diverged at epoch {epoch}: train_loss {shown}"


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
