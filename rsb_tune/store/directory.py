"""The study directory ``<storage>/<name>/``: its files, the lock and the upload of a mirror.

Layout::

    study.yaml          command line, kind, recipe, resolved base config, space file content,
                        versions, git commit, start/end times
    plan.json           every trial's id and fully resolved config (written before training)
    events/<id>.jsonl   append-only per-trial log of results and errors (the source of truth
                        for the tables; a retried trial appends, the tables keep the last row)
    trials.parquet      one row per finished trial        } rebuilt from plan + events
    epochs.parquet      one row per trial and epoch       } as trials finish (rsb_tune.store.tables)
    predictions/<id>.npz  per-example val/v2 correctness at the final epoch
    errors/<id>.txt     the traceback of a trial that failed
    ray/                the Ray Tune experiment (checkpoints, Ray's own logs)
    .lock               held by the running driver (an flock: released when it dies)

A study in an object store (``--storage s3://...``) has the same layout there; the driver
works on a local mirror of it (``rsb_tune.store.backends``), and Ray writes ``ray/`` to the store.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from analysis import contract as C
from analysis.files import confined
from rsb_tune.errors import StudyError, arg
from rsb_tune.store.backends import Location, Mirror, MirrorLock, StudyLock, atomic_write_text, bounded, locate, one_line, printable

__all__ = ["StudyDir", "check_name", "default_name", "package_versions", "git_commit", "now_iso", "json_default", "parse_meta", "parse_plan"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # matched whole (re.fullmatch: no trailing newline)


def check_name(name: Any) -> str:
    """``name`` when it is a study name (the one rule, for the API, the CLI and the browser's
    listing), else a :class:`StudyError` naming the argument (``name=`` or ``--name``)."""
    if not isinstance(name, str):
        raise StudyError(f"{arg('name', name)}: a study name is text, not {type(name).__name__}")
    if not _NAME_RE.fullmatch(name):
        why = "empty" if not name else "use letters, digits, '.', '_' and '-' (at most 128, not starting with a symbol)"
        raise StudyError(printable(f"{arg('name', name)}: {why}"))
    return name


def is_name(name: Any) -> bool:
    """Whether ``name`` is a study name (see :func:`check_name`)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def parse_meta(data: bytes, where: Any) -> dict[str, Any]:
    """The mapping of a ``study.yaml``'s bytes (``where``: the file, for the message); a file that
    is not one (binary, too large or too deep, malformed, not a mapping with ``kind``) is a
    :class:`StudyError` naming it. Timestamps stay the text the tool wrote."""
    import yaml

    from rsb_tune.store.yamltext import load_yaml, yaml_problem

    try:
        meta = load_yaml(data, str(where), StudyError)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise StudyError(f"{where}: corrupt YAML{at} ({yaml_problem(e)})") from None
    if not isinstance(meta, dict) or "kind" not in meta:
        raise StudyError(f"{where}: corrupt (not a study.yaml mapping with 'kind')")
    return meta


def parse_plan(data: bytes, where: Any) -> dict[str, dict[str, Any]]:
    """The trials of a ``plan.json``'s bytes; a file that is not a mapping of trial ids to
    configs is a :class:`StudyError` naming it."""
    try:
        plan = json.loads(data)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError included
        raise StudyError(f"{where}: corrupt ({type(e).__name__}: {one_line(e)})") from None
    except RecursionError:
        raise StudyError(f"{where}: corrupt (nested too deeply)") from None
    if not isinstance(plan, dict):
        raise StudyError(f"{where}: corrupt (not a mapping of trial ids)")
    bad = next((tid for tid, config in plan.items() if not isinstance(config, dict)), None)
    if bad is not None:
        raise StudyError(f"{where}: corrupt (trial {bad!r}: its config is not a mapping)")
    return plan


def default_name(kind: str, label: str) -> str:
    """A readable unique name: kind, recipe or space, and the time (``seeds-A2-20261129-131502``)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")
    return f"{kind}-{label}-{stamp}"


def now_iso(timespec: str = "seconds") -> str:
    """The time now in UTC, ISO 8601 (``timespec`` as :meth:`datetime.isoformat` takes it)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("rsb-tune", "torch", "torchvision", "timm", "ray", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class StudyDir:
    """The files of one study directory (for an object store: of its local mirror): its paths,
    manifest, plan, lock and upload. What goes into them is decided by ``rsb_tune.runner.lifecycle``."""

    def __init__(self, storage: str | os.PathLike | Location, name: str):
        check_name(name)
        self.location = storage if isinstance(storage, Location) else locate(storage)
        self.storage = self.location.root
        self.name = name
        self.dir = self.storage / name
        self.mirror = Mirror(self.location.fs, f"{self.location.fs_root}/{name}", self.dir, name) if self.location.remote else None

    # --- paths
    meta_path = property(lambda self: self.dir / C.MANIFEST)
    plan_path = property(lambda self: self.dir / C.PLAN)
    events_dir = property(lambda self: self.dir / C.EVENTS)
    predictions_dir = property(lambda self: self.dir / C.PREDICTIONS)
    errors_dir = property(lambda self: self.dir / C.ERRORS)
    ray_dir = property(lambda self: self.dir / C.RAY)
    trials_path = property(lambda self: self.dir / C.TRIALS)
    epochs_path = property(lambda self: self.dir / C.EPOCHS)

    @property
    def where(self) -> str:
        """The study's home as the user named it: its directory, or its URI."""
        return self.location.display(self.name)

    def exists(self) -> bool:
        if self.mirror:
            return bounded(self.mirror.exists_remotely, f"study {self.where}", "cannot read it")
        return self.meta_path.exists()

    def lock(self) -> StudyLock | MirrorLock:
        local = StudyLock(self.dir / ".lock")
        return MirrorLock(local, self.mirror) if self.mirror else local

    def sync(self, only: Path | None = None) -> None:
        """Upload what changed to the object store now (``only``: under this directory of the
        study); nothing to do for a directory."""
        if not self.mirror:
            return
        try:
            self.mirror.flush(None if only is None else only.resolve().relative_to(self.dir.resolve()).as_posix())
        except OSError as e:
            raise StudyError(f"study {self.where}: uploading failed ({one_line(e)})") from None

    # --- creation
    def create(self, meta: Mapping[str, Any], plan: Mapping[str, Mapping[str, Any]]) -> None:
        import yaml

        for d in (self.dir, self.events_dir, self.predictions_dir, self.errors_dir):
            d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.plan_path, json.dumps(plan, indent=1, sort_keys=True))
        meta = {**meta, "name": self.name, "n_trials": len(plan), "started_at": now_iso(), "ended_at": None}
        atomic_write_text(self.meta_path, yaml.safe_dump(meta, sort_keys=False))
        self.sync()

    def update_meta(self, **changes: Any) -> None:
        import yaml

        meta = {**self.meta(), **changes}
        atomic_write_text(self.meta_path, yaml.safe_dump(meta, sort_keys=False))

    # --- reading (errors name the file)
    def confined(self, path: Path) -> Path:
        """``path`` (a file of the study) resolved, when it stays inside the study directory and
        that inside the storage with every symlink followed; else a :class:`StudyError` naming it.
        Every read of a study's files passes through here (:func:`analysis.files.confined`): a
        link planted to a file outside is refused, never read."""
        try:
            confined(self.dir, self.storage, "the storage")
            return confined(path, self.dir)
        except C.StudyError as e:
            raise StudyError(str(e)) from None

    def read_bytes(self, path: Path) -> bytes:
        """The bytes of a file of the study (:meth:`confined`); OSErrors (a missing file) propagate."""
        return self.confined(path).read_bytes()

    def require(self) -> "StudyDir":
        if self.mirror:
            if not self.exists():
                raise StudyError(f"no study {self.name!r} in {self.location.display()} (pass the {arg('storage')} it was run with)")
            self._refresh_unless_running_here()
        elif not self.dir.is_dir():
            raise StudyError(f"no study {self.name!r} in {self.storage} (see `ls {self.storage}` or pass {arg('storage')})")
        if not self.meta_path.exists():
            raise StudyError(f"{self.meta_path}: missing; {self.dir} is not an rsb-tune study")
        self.confined(self.dir)
        self.meta()
        self.plan()
        return self

    def _refresh_unless_running_here(self) -> None:
        """Bring the local copy up to date with the store, unless a driver on this machine runs
        the study (it holds the copy's lock and keeps the copy current: reading it is enough,
        and replacing its files under it would lose what it has not uploaded yet)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        probe = StudyLock(self.dir / ".lock")
        try:
            probe.acquire()
        except StudyError:
            return
        try:
            self.mirror.refresh()
        except OSError as e:
            raise StudyError(f"study {self.where}: cannot read it ({one_line(e)})") from None
        finally:
            probe.release()

    def meta(self) -> dict[str, Any]:
        """study.yaml (:func:`parse_meta`); unreadable or damaged: a StudyError naming it."""
        try:
            data = self.read_bytes(self.meta_path)
        except OSError as e:
            raise StudyError(f"{self.meta_path}: unreadable ({type(e).__name__})") from None
        return parse_meta(data, self.meta_path)

    def plan(self) -> dict[str, dict[str, Any]]:
        """plan.json (:func:`parse_plan`); unreadable or damaged: a StudyError naming it."""
        try:
            data = self.read_bytes(self.plan_path)
        except OSError as e:
            raise StudyError(f"{self.plan_path}: unreadable ({type(e).__name__})") from None
        return parse_plan(data, self.plan_path)

    def add_trial(self, trial_id: str, config: Mapping[str, Any]) -> None:
        """Record a trial created during a search (its resolved config) in plan.json."""
        plan = self.plan()
        if trial_id not in plan:
            plan[trial_id] = dict(config)
            atomic_write_text(self.plan_path, json.dumps(plan, indent=1, sort_keys=True, default=json_default))


def json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    return str(o)
