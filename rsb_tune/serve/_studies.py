"""Every read the study browser makes of a storage, in one place.

The server only reads. A study is found by its name in the storage's *listing* (the
directories under the storage root that hold a ``study.yaml``), never by joining a name from
a URL into a path; a study directory or a table that is a symlink leading out of the storage
is not listed. A running study is read without disturbing it: no lock is taken (whether its
driver lives is read from the text of its ``.lock``, not by locking it), the tables and
manifests are replaced atomically by the engine, and only the complete lines of an event log
count (its last line may be in flight).

An object-store storage (``s3://...``) is read through a copy of each study in the server's
own cache, refreshed at most every :data:`REFRESH_S` seconds (never the driver's mirror).

A study's *signature* is the names, mtimes and sizes of its files, taken from one listing of
its directory and one of its event logs, without reading a file: everything read from a
study is cached by it, so a poll of an unchanged study reads nothing.

The app uses only :class:`Storage`'s methods ``refs`` (the listing), ``find(name)``,
``signature(ref)``/``table_signature(ref, sig)`` (cache keys), ``summary(ref, sig)``,
``trial_rows(ref, sig)``, ``epoch_rows(ref, sig)``, ``finetunes_of(name)``, ``table_path(ref, file)``,
``served_table(ref, file)`` and ``ref.dir`` (what ``analysis`` draws from): swapping
them to ``rsb_tune.api`` (``list_studies``, ``load``, ``Study.status()``) happens here only.
Rows, summaries and served tables are scrubbed of the server's paths
(:func:`rsb_tune.serve._safe.scrub`); the served tables also lose the columns that name its
machine (:data:`_UNSERVED`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from analysis import contract as C
from rsb_tune.serve._safe import scrub, scrub_text

__all__ = ["Storage", "StudyRef", "REFRESH_S", "TABLES"]


def _trial_state(events):
    from rsb_tune.runner.lifecycle import trial_state

    return trial_state(events)


def _diverged_reason(by_epoch):
    from rsb_tune.store.events import diverged_reason

    return diverged_reason(by_epoch)


def _is_name(name) -> bool:
    from rsb_tune.store.directory import is_name  # the engine's rule

    return is_name(name)


def _epoch_columns() -> tuple[str, ...]:
    from analysis.contract import EPOCH_COLUMNS

    return EPOCH_COLUMNS


REFRESH_S = 2.0  # an object-store listing and each study's copy are refreshed at most this often
TABLES = ("trials.parquet", "epochs.parquet")  # downloadable, by these names only
_ACTIVE_S = 600.0  # a study whose driver runs on another host: running if it wrote this recently
_FINAL_KEYS = ("val_top1", "v2_top1", "val_top5", "v2_top5", "val_loss", "v2_loss")
_HIDDEN_CONFIG = ("trial_id",)  # shown elsewhere on the page
_SEED_KEYS = ("seed", "model_seed", "data_seed", "aug_seed")
_WATCHED = ("study.yaml", "plan.json", ".lock", *TABLES, C.EVALS)  # the study's files that its pages show
_DRAWN_FROM = ("study.yaml", *TABLES, C.EVALS)  # evals.parquet: the report's re-evaluation section
_UNSERVED = ("data_path", "v2_path", "hostname", "node_id")  # table columns that name the machine


@dataclasses.dataclass(frozen=True)
class StudyRef:
    """A listed study: its name and its directory (for an object store: the server's copy)."""

    name: str
    dir: Path


class Storage:
    """The studies of one ``--storage``, read-only, with caches keyed by file signatures."""

    def __init__(self, spec: str):
        from rsb_tune.store.backends import locate

        self.location = locate(spec)
        self.remote = self.location.remote
        if self.remote:
            from rsb_tune.store.backends import cache_dir

            key = hashlib.sha1(self.location.spec.encode()).hexdigest()[:16]
            self.root = cache_dir() / "serve" / key
        else:
            self.root = self.location.root
        self._lock = threading.RLock()
        self._files: dict[tuple, tuple[tuple, Any]] = {}  # (a study's file, parser) -> (its signature, parsed)
        self._rows: dict[tuple[str, str], tuple[tuple, Any]] = {}
        self._listing: tuple[float, dict[str, StudyRef]] = (-math.inf, {})
        self._pulled: dict[str, float] = {}

    # ------------------------------------------------------------------ listing
    def check(self) -> None:
        """Fail at start (a UserError) when the storage cannot be read at all."""
        from rsb_tune.errors import arg
        from rsb_tune.store.backends import bounded, check_listable

        if self.remote:
            bounded(lambda: self._remote_names(), arg("storage", self.location.display()), "cannot list it")
        check_listable(self.location)

    def refs(self) -> dict[str, StudyRef]:
        """{name: StudyRef} of every study in the storage, as listed now."""
        if self.remote:
            return self._remote_refs()
        root = self.root.resolve()
        return {e.name: ref for e in _entries(root) if (ref := _listed(e, root))}

    def find(self, name: str) -> StudyRef | None:
        """The study called ``name`` in the listing, or None (any other string: None)."""
        if not _is_name(name):
            return None
        if not self.remote:  # the listing, but only the named entry is looked at
            root = self.root.resolve()
            return next((_listed(e, root) for e in _entries(root) if e.name == name), None)
        ref = self._remote_refs().get(name)
        if ref is not None:
            self._pull(ref)
        return ref

    def _remote_names(self) -> list[str]:
        import pyarrow.fs

        fs, base = self.location.fs, self.location.fs_root
        infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=False, allow_not_found=True))
        names = [Path(i.path).name for i in infos if i.type == pyarrow.fs.FileType.Directory]
        names = [n for n in names if _is_name(n)]
        has = fs.get_file_info([f"{base}/{n}/study.yaml" for n in names])
        return [n for n, info in zip(names, has) if info.type == pyarrow.fs.FileType.File]

    def _remote_refs(self) -> dict[str, StudyRef]:
        with self._lock:
            when, refs = self._listing
            if time.monotonic() - when < REFRESH_S:
                return refs
        try:
            names = self._remote_names()
        except OSError:
            names = list(refs)  # the store did not answer: the last listing stands
        refs = {n: StudyRef(n, self.root / n) for n in names}
        with self._lock:
            self._listing = (time.monotonic(), refs)
        return refs

    def _pull(self, ref: StudyRef) -> None:
        """Bring the server's copy of a store study up to date (without the driver's lease or lock)."""
        from rsb_tune.store.backends import Mirror

        with self._lock:
            if time.monotonic() - self._pulled.get(ref.name, -math.inf) < REFRESH_S:
                return
            self._pulled[ref.name] = time.monotonic()
        mirror = Mirror(self.location.fs, f"{self.location.fs_root}/{ref.name}", ref.dir, ref.name)
        try:
            mirror.refresh()
        except OSError:
            pass  # the store did not answer: the last copy stands

    # ------------------------------------------------------------------ one study
    def signature(self, ref: StudyRef) -> tuple:
        """Changes whenever anything the pages show changes: (name, mtime, size) of the study's
        files, from one listing of its directory and one of its event logs (nothing is read)."""
        return _stats(ref.dir, _WATCHED.__contains__) + _stats(ref.dir / "events", _is_log)

    def table_signature(self, ref: StudyRef, signature: tuple | None = None) -> tuple:
        """Changes when the tables (what the figures are drawn from) change; a part of
        ``signature`` (computed when not given)."""
        return tuple(s for s in signature or self.signature(ref) if s[0] in _DRAWN_FROM)

    def meta(self, ref: StudyRef) -> dict[str, Any]:
        """study.yaml, parsed by the store; damaged: a StudyError naming it (for the study's card)."""
        return _undamaged(self._parsed(ref.dir / "study.yaml", _parse_meta))

    def plan(self, ref: StudyRef) -> dict[str, dict[str, Any]]:
        """plan.json, parsed by the store; damaged: a StudyError naming it."""
        return _undamaged(self._parsed(ref.dir / "plan.json", _parse_plan))

    def events(self, ref: StudyRef, trial_id: str) -> list[dict]:
        """The complete lines of a trial's event log."""
        events = self._parsed(ref.dir / "events" / f"{trial_id}.jsonl", _parse_events)
        if isinstance(events, _Damaged):  # a link out of the study: counted as a damaged log
            from rsb_tune.store.events import refused_log

            return refused_log()
        return events

    def _parsed(self, path: Path, parse):
        """``parse(bytes)`` of a file of a study (``path``: ``<study>/<file>``, confined to the
        study's directory as the store confines every read), read and parsed again only when its
        size or mtime changes (a poll of a running study re-reads the event logs that grew, not
        its manifest). A link leading out of the study is not read: a damaged file."""
        sig = _sig(path)
        with self._lock:
            cached = self._files.get((path, parse))
        if cached and cached[0] == sig:
            return cached[1]
        study = path.parent if path.parent.name != "events" else path.parent.parent
        if not _inside(path, study):
            value = _Damaged(f"{path.relative_to(study).as_posix()}: a link leading out of the study directory; refused")
        else:
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            value = parse(data)
        with self._lock:
            self._files[(path, parse)] = (sig, value)
        return value

    def _memo(self, what: str, ref: StudyRef, build, sig: tuple | None):
        """``build(ref)``, computed again only when the study's files changed (``sig``: its
        signature, when the caller has it already)."""
        sig = sig or self.signature(ref)
        with self._lock:
            cached = self._rows.get((what, ref.name))
        if cached and cached[0] == sig:
            return cached[1]
        value = build(ref)
        with self._lock:
            self._rows[(what, ref.name)] = (sig, value)
        return value

    def trial_rows(self, ref: StudyRef, sig: tuple | None = None) -> list[dict[str, Any]]:
        """One row per planned trial: ids, seeds, varied params, status, epochs, final metrics, error."""
        return self._memo("trials", ref, self._trial_rows, sig)

    def epoch_rows(self, ref: StudyRef, sig: tuple | None = None) -> list[dict[str, Any]]:
        """One row per trial and epoch reported so far (the last report of an epoch wins)."""
        return self._memo("epochs", ref, self._epoch_rows, sig)

    def _trial_rows(self, ref: StudyRef) -> list[dict[str, Any]]:
        from rsb_tune.errors import StudyError

        try:  # a damaged study has no rows: its card says what is wrong
            meta, plan = self.meta(ref), _undamaged(self._parsed(ref.dir / "plan.json", _parse_shown_plan))
        except StudyError:
            return []
        params = [scrub_text(p) for p in meta.get("params") or [] if isinstance(p, str)]
        rows = []  # scrubbed: the plan once per change of its file, the rest here
        for tid, config in plan.items():
            config = config if isinstance(config, dict) else {}
            events = self.events(ref, tid)
            status, by_epoch, error = _trial_state(events)
            last = by_epoch[max(by_epoch)] if by_epoch else {}
            times = [ev["time"] for ev in events if isinstance(ev.get("time"), (int, float))]
            row: dict[str, Any] = {"trial_id": tid, **{k: config.get(k) for k in _SEED_KEYS if k in config}}
            row["params"] = {p: config.get(p) for p in params}
            row["status"] = scrub(status)
            row["epochs_done"] = max(by_epoch) if by_epoch else 0
            row["epochs"] = config.get("epochs")
            row.update({k: _num(last.get(k)) for k in _FINAL_KEYS})
            row["run_time_s"] = _num(sum(ev.get("epoch_time_s") or 0.0 for ev in by_epoch.values())) if by_epoch else None
            row["first_time"], row["last_time"] = (_num(min(times)), _num(max(times))) if times else (None, None)
            row["error"] = scrub((error or {}).get("error")) if error else _diverged_reason(by_epoch) if status == "diverged" else None
            row["config"] = {k: v for k, v in config.items() if k not in _HIDDEN_CONFIG}
            rows.append(row)
        return rows

    def _epoch_rows(self, ref: StudyRef) -> list[dict[str, Any]]:
        from rsb_tune.errors import StudyError

        columns = _epoch_columns()[3:]
        rows = []
        try:
            plan = self.plan(ref)
        except StudyError:
            return []
        for tid, config in plan.items():
            seed = config.get("seed") if isinstance(config, dict) else None
            _, by_epoch, _ = _trial_state(self.events(ref, tid))
            for epoch in sorted(by_epoch):
                ev = by_epoch[epoch]
                rows.append({"trial_id": tid, "seed": seed, "epoch": epoch, **{k: _num(ev.get(k)) for k in columns}})
        return rows

    def summary(self, ref: StudyRef, sig: tuple | None = None) -> dict[str, Any]:
        """The study's card: kind, recipe or space, counts, metric mean ± std and best, times, state, ETA."""
        return self._live(ref, self._memo("summary", ref, self._summary, sig))

    def _summary(self, ref: StudyRef) -> tuple[Any, dict[str, Any]]:
        """(the study's status from the one status function, the page's other facts); a study
        whose manifest or plan is damaged: a ``damaged`` status naming the file."""
        from rsb_tune.errors import StudyError
        from rsb_tune.store import damaged_status
        from rsb_tune.store.status import status_of

        try:
            meta, plan = self.meta(ref), self.plan(ref)
        except StudyError as e:
            status = damaged_status(name=ref.name, where=ref.name, problem=str(e))
            return status, {"space": None, "params": [], "last_time": 0.0, "dataset": None, "command": None, "started_ts": None, "has_tables": False, "finetune_from": None}
        rows = self.trial_rows(ref)  # one per planned trial, in plan order, from the cached event logs
        status = status_of(
            name=ref.name, where=ref.name, directory=ref.dir, meta=meta, plan=plan, events_of=lambda tid: self.events(ref, tid),
            running_now=False, stopping=self._stopping(ref, meta),
        )  # fmt: skip
        extra = {
            "space": Path(str(meta["space_file"])).stem if meta.get("space_file") else None,
            "params": [p for p in meta.get("params") or [] if isinstance(p, str)],
            "last_time": max([r["last_time"] for r in rows if r["last_time"]] or [0.0]),
            "dataset": _names(meta.get("dataset")),
            "command": meta.get("command"),
            "started_ts": _parse_time(status.started_at),
            "has_tables": all((ref.dir / t).is_file() for t in TABLES),
            "finetune_from": _lineage(meta),
        }
        return status, extra

    def finetunes_of(self, name: str) -> list[str]:
        """The names of the listed fine-tune studies made from study ``name`` (their manifests'
        ``finetune_from``, read as every manifest is: cached until its file changes; a store
        study's manifest is known once its page was opened)."""
        from rsb_tune.errors import StudyError

        out = []
        for ref in self.refs().values():
            try:
                meta = self.meta(ref)
            except StudyError:
                continue
            src = _lineage(meta)
            if src is not None and src["study"] == name:
                out.append(ref.name)
        return sorted(out)

    def _stopping(self, ref: StudyRef, meta: dict[str, Any]):
        """A sequential study's stopping record, recomputed as ``rsb_tune.load(...).status()`` does."""
        if not meta.get("stopping"):
            return None
        from rsb_tune.sequential.engine import stopping_record
        from rsb_tune.store.directory import StudyDir

        try:
            return stopping_record(StudyDir(ref.dir.parent, ref.name), meta)
        except Exception:  # a damaged record: the manifest's own record stands
            return dict(meta["stopping"]) if isinstance(meta["stopping"], dict) else None

    def _live(self, ref: StudyRef, cached) -> dict:
        """What depends on the moment, not on the files: the state (a driver dies without
        writing anything) and the ETA."""
        status, extra = cached
        status = dataclasses.replace(status, running_now=self._driver_alive(ref, extra["last_time"]))
        out = {**scrub(status.as_dict()), **scrub({k: v for k, v in extra.items() if k not in ("last_time", "started_ts")})}
        remaining, eta, started = out["planned"] - out["done"] - out["failed"], None, extra["started_ts"]
        if out["state"] == "running" and remaining > 0 and out["done"] and started:
            eta = remaining * max(1e-6, time.time() - started) / out["done"]
        out["eta_s"] = _num(eta)
        return out

    def _driver_alive(self, ref: StudyRef, last: float) -> bool:
        """Read from the lock file's text ("pid N on HOST"), without taking the lock: a driver on
        this host is alive if its process is; elsewhere, if the study was written to lately."""
        from rsb_tune.store.backends import StudyLock

        if self.remote:  # the store's lease names the holder; a copy is "running" while it moves
            return _recent(ref, last)
        lock = StudyLock(ref.dir / ".lock")
        named = lock.holder()
        if named is None:
            return False
        if named[1] not in (socket.gethostname(), os.uname().nodename):
            return _recent(ref, last)
        return lock.held() and _is_driver(named[0])

    def table_path(self, ref: StudyRef, filename: str) -> Path | None:
        """The file of a downloadable table of the study, if it exists inside the storage."""
        if filename not in TABLES:
            return None
        path = ref.dir / filename
        return path if path.is_file() and _inside(path, ref.dir) else None

    def served_table(self, ref: StudyRef, filename: str) -> bytes | None:
        """A downloadable table as parquet bytes, without what names the server's machine: the
        columns of :data:`_UNSERVED` are dropped and every string passes through
        :func:`~rsb_tune.serve._safe.scrub_text` (the file on disk is untouched)."""
        path = self.table_path(ref, filename)
        try:
            return None if path is None else _served_parquet(path)
        except (OSError, ValueError):  # pyarrow's errors of a file that is not a table are ValueErrors
            return None


# ---------------------------------------------------------------------- helpers


def _is_driver(pid: int) -> bool:
    """Whether process ``pid`` is an rsb-tune driver (a reused pid of something else is not)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return b"rsb_tune" in cmdline or b"rsb-tune" in cmdline


def _recent(ref: StudyRef, last: float) -> bool:
    meta_t = (_sig(ref.dir / "study.yaml") or (0, 0))[0] / 1e9
    return time.time() - max(last, meta_t) < _ACTIVE_S


def _inside(path: Path, root: Path) -> bool:
    """``path`` with every symlink followed stays under ``root`` (the store's one guard,
    :func:`analysis.files.confined`)."""
    from analysis.files import confined

    try:
        confined(path, root)
    except ValueError:  # analysis.StudyError
        return False
    return True


def _entries(root: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(root) as it:
            return list(it)
    except OSError:
        return []


def _listed(entry: os.DirEntry, root: Path) -> StudyRef | None:
    """The study of a storage's listing entry: a directory with a ``study.yaml``, not a symlink
    leading out of the storage (only a symlink can: ``root`` is resolved). A ``study.yaml`` that
    links out is listed, and read as damaged (:meth:`Storage._parsed` refuses it)."""
    if not _is_name(entry.name):
        return None
    path = Path(entry.path)
    meta = path / "study.yaml"
    if entry.is_symlink() and not _inside(path, root):
        return None
    return StudyRef(entry.name, path) if entry.is_dir() and meta.is_file() else None


def _is_log(name: str) -> bool:
    return name.endswith(".jsonl") and not name.startswith(".")


def _stats(directory: Path, keep) -> tuple:
    """(name, mtime_ns, size) of the files of ``directory`` whose name ``keep`` accepts, sorted."""
    out = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if keep(entry.name):
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    out.append((entry.name, st.st_mtime_ns, st.st_size))
    except OSError:
        return ()
    out.sort()
    return tuple(out)


def _served_parquet(path: Path) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    table = table.drop_columns([c for c in table.column_names if c in _UNSERVED])
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            values = [None if v is None else scrub_text(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, field, pa.array(values, field.type))
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(None), buf)  # pandas' metadata names the dropped columns
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class _Damaged:
    """What the store said of a file it could not parse (cached as a parse result is)."""

    problem: str


def _undamaged(value):
    """A parsed file, or the StudyError of a damaged one."""
    if isinstance(value, _Damaged):
        from rsb_tune.errors import StudyError

        raise StudyError(value.problem)
    return value


def _parse_meta(data: bytes) -> dict[str, Any] | _Damaged:
    from rsb_tune.errors import StudyError
    from rsb_tune.store.directory import parse_meta

    try:
        return parse_meta(data, "study.yaml")  # named without the server's path
    except StudyError as e:
        return _Damaged(str(e))


def _parse_plan(data: bytes) -> dict[str, dict[str, Any]] | _Damaged:
    from rsb_tune.errors import StudyError
    from rsb_tune.store.directory import parse_plan

    try:
        return parse_plan(data, "plan.json")
    except StudyError as e:
        return _Damaged(str(e))


def _parse_shown_plan(data: bytes) -> dict[str, dict[str, Any]] | _Damaged:
    plan = _parse_plan(data)
    return plan if isinstance(plan, _Damaged) else scrub(plan)


def _parse_events(data: bytes) -> list[dict]:
    from rsb_tune.store.events import parse_event_lines

    return parse_event_lines(data.split(b"\n")[:-1])  # the text after the last newline may be in flight


def _sig(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _lineage(meta: dict[str, Any]) -> dict[str, Any] | None:
    """A fine-tune study's source (``finetune_from`` of its manifest, planning/finetune.py): the
    source study's name, recipe and dataset, the fine-tuning recipe's source, the seed offset
    and each trial's source seed; the checkpoints' paths name the machine and are not shown.
    Any other study, or a record without a source name: None."""
    src = meta.get("finetune_from")
    if meta.get("kind") != "finetune" or not isinstance(src, dict) or not isinstance(src.get("study"), str):
        return None
    trials = src.get("trials") if isinstance(src.get("trials"), dict) else {}
    return {
        "study": src["study"],
        "recipe": _names(src.get("recipe")),
        "dataset": _names(src.get("dataset")),
        "recipe_source": src.get("recipe_source"),
        "seed_offset": src.get("seed_offset"),
        "trials": {str(t): {"seed": rec.get("seed") if isinstance(rec, dict) else None} for t, rec in trials.items()},
    }


def _names(value: Any) -> Any:
    """A study's recipe or dataset: its name, or its trials' names when a grid varies it."""
    return ", ".join(map(str, value)) if isinstance(value, list) else value


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _num(v: Any) -> float | None:
    return float(v) if _finite(v) else None


def _parse_time(text: Any) -> float | None:
    import datetime as _dt

    try:
        return _dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None
