"""Where studies live, how a study is locked, and how an object-store study is kept in sync.

``--storage`` is either a directory (local, or a shared mount such as NFS that every node
sees) or an object-store URI that pyarrow's filesystems understand (``s3://BUCKET/PREFIX``,
``gs://BUCKET/PREFIX``; S3 options such as ``?endpoint_override=HOST:PORT&region=R`` go in the
query, credentials come from the usual environment or config files).

A running study appends to event logs, replaces files atomically and holds an ``flock``;
an object store offers none of the three. So for a URI the driver works on a local working
copy of the study (the *mirror*, under ``~/.cache/rsb-tune/mirror``) and a background thread
uploads what changed every couple of seconds; a trial's final result is uploaded before the
driver moves on, and everything at the end. Ray Tune writes checkpoints straight to the store
from whichever node a trial runs on, so nothing a trial needs lives on the driver's disk. The
store is the truth: opening a study downloads it (all but Ray's checkpoints) into the mirror.

Locking: a directory study is locked with an ``flock`` on ``<study>/.lock``; an object-store
study additionally with a *lease* object ``<study>/.lease`` that the driver renews. A lease
older than :data:`LEASE_TTL_S`, or held by a dead process on this host, is taken over. Without
conditional writes the lease is best-effort: two drivers started within the same second
on different hosts could both see it free (each reads its lease back after a pause, which
narrows that window to requests in flight at the same time).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from rsb_tune.errors import StoreUnreachable, StudyError, UserError

__all__ = ["Location", "locate", "check_writable", "bounded", "StudyLock", "MirrorLock", "Mirror", "Lease", "LEASE_TTL_S", "cache_dir"]

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

LEASE_TTL_S = 120.0  # a lease not renewed for this long belongs to a driver that died
_RENEW_S = 20.0  # how often a running driver renews its lease
_SYNC_S = 2.0  # how often the mirror uploads what changed
_SETTLE_S = 1.0  # pause before reading a freshly written lease back
# dot files (the lock, the lease, files being written before their atomic rename), sqlite's
# side files (a database is uploaded as a snapshot) and Ray's part, which Ray writes itself
_NOT_MIRRORED = re.compile(r"(^|/)\.|-(journal|wal|shm)$|^ray/")


def cache_dir() -> Path:
    """``$RSB_TUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/rsb-tune``, else ``~/.cache/rsb-tune``."""
    if os.environ.get("RSB_TUNE_CACHE_DIR"):
        return Path(os.environ["RSB_TUNE_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "rsb-tune"


@dataclasses.dataclass(frozen=True)
class Location:
    """Where studies live: ``root`` holds the study directories (for an object store, the
    local mirror of ``fs_root`` on ``fs``)."""

    spec: str
    root: Path
    fs: Any = None  # a pyarrow FileSystem for an object store, else None
    fs_root: str = ""

    @property
    def remote(self) -> bool:
        return self.fs is not None

    def display(self, name: str | None = None) -> str:
        """The URI (without its query) or the directory, optionally of one study."""
        base = self.spec.split("?", 1)[0].rstrip("/") if self.remote else str(self.root)
        return f"{base}/{name}" if name else base


def locate(spec: str | os.PathLike) -> Location:
    """Parse ``--storage``; a URI is resolved to its pyarrow filesystem (no request yet)."""
    spec = str(spec)
    if spec.startswith("file://"):
        spec = spec[len("file://") :]
    if not _URI_RE.match(spec):
        return Location(spec, Path(spec).expanduser().resolve())
    import pyarrow.fs

    try:
        fs, fs_root = pyarrow.fs.FileSystem.from_uri(spec)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--storage {spec}: {first} (use a directory, or s3://BUCKET/PREFIX, gs://BUCKET/PREFIX)") from None
    fs_root = fs_root.rstrip("/")
    if not fs_root:
        raise UserError(f"--storage {spec}: name a bucket (s3://BUCKET/PREFIX)")
    key = hashlib.sha1(spec.encode()).hexdigest()[:16]
    return Location(spec, cache_dir() / "mirror" / key, fs, fs_root)


def check_writable(loc: Location) -> None:
    """Fail before anything is written when the storage cannot take a study."""
    if not loc.remote:
        probe_dir = loc.root
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
            raise UserError(f"--storage {loc.spec}: not writable ({probe_dir} is not a writable directory)")
        return
    probe = f"{loc.fs_root}/.rsb-tune-probe-{uuid.uuid4().hex[:8]}"

    def write_probe():
        loc.fs.create_dir(loc.fs_root)
        with loc.fs.open_output_stream(probe) as f:
            f.write(b"probe")
        loc.fs.delete_file(probe)

    bounded(write_probe, f"--storage {loc.display()}", "cannot write there")


def bounded(fn: Callable[[], Any], where: str, failed: str) -> Any:
    """``fn()``, its errors as one-line UserErrors, and a bounded wait: an unreachable store is
    retried by its client for up to 15 minutes (GCS), a user should know in seconds."""
    timeout = float(os.environ.get("RSB_TUNE_STORE_TIMEOUT_S", "30"))
    outcome: list[tuple[Any, BaseException | None]] = []
    worker = threading.Thread(target=lambda: outcome.append(_capture(fn)), daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise StoreUnreachable(
            f"{where}: no answer within {timeout:g} s (is the store reachable from here, and are credentials set? "
            "RSB_TUNE_STORE_TIMEOUT_S changes the wait)"
        )
    value, error = outcome[0]
    if error is not None:  # network, credentials, missing bucket: OSErrors from pyarrow
        raise UserError(f"{where}: {failed} ({_one_line(error)})")
    return value


def _capture(fn) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - handed to the caller's thread
        return None, e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(e).__name__


# --------------------------------------------------------------------------- locks


class StudyLock:
    """An exclusive ``flock`` on ``<study>/.lock``: two drivers on one machine (or on one
    shared file system) never run one study; the kernel releases it when the holder dies."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> "StudyLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.path.read_text().strip() or "another process"
            raise StudyError(f"study {self.path.parent.name!r} is already running ({holder}); wait for it or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc):
        self.release()


class Lease:
    """``<study>/.lease`` in the object store: who runs the study, renewed while it runs."""

    def __init__(self, fs, path: str, name: str, ttl: float = LEASE_TTL_S):
        self.fs, self.path, self.name, self.ttl = fs, path, name, ttl
        self.token = uuid.uuid4().hex
        self.held = False

    def _read(self) -> tuple[dict | None, float]:
        """(lease content or None, its age in seconds by the store's clock of last write)."""
        import pyarrow.fs

        info = self.fs.get_file_info(self.path)
        if info.type != pyarrow.fs.FileType.File:
            return None, 0.0
        try:
            with self.fs.open_input_stream(self.path) as f:
                content = json.loads(f.read())
        except (OSError, ValueError):
            return None, 0.0  # deleted between the two requests, or torn: free
        mtime = info.mtime or _dt.datetime.now(_dt.timezone.utc)
        if mtime.tzinfo is None:  # filesystems that give naive UTC times
            mtime = mtime.replace(tzinfo=_dt.timezone.utc)
        return content, (_dt.datetime.now(_dt.timezone.utc) - mtime).total_seconds()

    def _write(self) -> None:
        body = {"token": self.token, "host": socket.gethostname(), "pid": os.getpid(), "renewed": time.time()}
        with self.fs.open_output_stream(self.path) as f:
            f.write(json.dumps(body).encode())

    def acquire(self) -> "Lease":
        held, age = self._read()
        if held and held.get("token") != self.token and age < self.ttl and not _dead_here(held):
            raise StudyError(
                f"study {self.name!r} is already running (pid {held.get('pid')} on {held.get('host')}, lease renewed "
                f"{age:.0f} s ago); stop it first, or if it died, wait {self.ttl - age:.0f} s for its lease to expire"
            )
        self._write()
        time.sleep(_SETTLE_S)
        now, _ = self._read()
        if not now or now.get("token") != self.token:
            raise StudyError(f"study {self.name!r} was started by another driver at the same moment ({(now or {}).get('host')}); only one runs it")
        self.held = True
        return self

    def renew(self) -> None:
        if self.held:
            self._write()

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        held, _ = self._read()
        if held and held.get("token") == self.token:
            self.fs.delete_file(self.path)


def _dead_here(holder: dict) -> bool:
    """The lease's holder ran on this host and its process is gone."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --------------------------------------------------------------------------- mirror


class Mirror:
    """A study's local working copy (``local``) of ``remote`` on ``fs``.

    ``pull`` makes the copy equal to the store (all but Ray's checkpoints); ``flush`` uploads
    the files changed locally since (each once, sqlite databases through a consistent
    snapshot); ``start``/``stop`` run ``flush`` and the lease renewal on a thread while a driver
    holds the study. Actions queued with ``after_flush`` (deleting a superseded checkpoint)
    run only once the files changed before them are in the store.
    """

    def __init__(self, fs, remote: str, local: Path, name: str):
        self.fs, self.remote, self.local, self.name = fs, remote.rstrip("/"), local, name
        self.lease = Lease(fs, f"{self.remote}/.lease", name)
        self._uploaded: dict[str, tuple[int, int]] = {}  # relative path -> (mtime_ns, size) last in the store
        self._after: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def __getstate__(self):  # Ray pickles the Tuner's callbacks (tuner.pkl): no thread state
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_stop", "_thread", "_after")}

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.RLock(), _stop=threading.Event(), _thread=None, _after=[])

    # --- store -> local
    def exists_remotely(self) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(f"{self.remote}/study.yaml").type == pyarrow.fs.FileType.File

    def pull(self) -> bool:
        """Download the study into the local copy, dropping local files the store lacks;
        False (and nothing touched) when the store has no study here."""
        import pyarrow.fs

        if not self.exists_remotely():
            return False
        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.remote, recursive=True))
        wanted = {}
        for info in infos:
            rel = info.path[len(self.remote) + 1 :]
            if info.type == pyarrow.fs.FileType.File and not _NOT_MIRRORED.search(rel):
                wanted[rel] = info.path
        with self._lock:
            self.local.mkdir(parents=True, exist_ok=True)
            for path in list(self._local_files()):
                if path not in wanted:
                    (self.local / path).unlink()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda item: self._download(*item), wanted.items()))
            self._uploaded = {rel: _signature(self.local / rel) for rel in wanted}
        return True

    def _download(self, rel: str, remote_path: str) -> None:
        dest = self.local / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with self.fs.open_input_stream(remote_path) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)

    def reset(self) -> None:
        """Empty the local copy (a new study must not inherit a stale cache)."""
        with self._lock:
            for rel in list(self._local_files()):
                (self.local / rel).unlink()
            self._uploaded = {}

    # --- local -> store
    def _local_files(self):
        if not self.local.is_dir():
            return
        for p in self.local.rglob("*"):
            rel = p.relative_to(self.local).as_posix()
            if p.is_file() and not _NOT_MIRRORED.search(rel):
                yield rel

    def flush(self, only: str | None = None) -> int:
        """Upload every file changed since it was last uploaded (``only``: those under this
        relative directory); returns how many."""
        with self._lock:
            changed = {}
            for rel in self._local_files():
                if only is not None and not rel.startswith(only.rstrip("/") + "/"):
                    continue
                sig = _signature(self.local / rel)
                if sig is not None and self._uploaded.get(rel) != sig:
                    changed[rel] = sig
            if changed:
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    done = dict(zip(changed, pool.map(self._upload, changed)))
                self._uploaded.update({rel: sig for rel, sig in changed.items() if done[rel]})
            after, self._after = self._after, []
            for fn in after:
                fn()
            return len(changed)

    def _upload(self, rel: str) -> bool:
        """Upload one file (False: it was removed meanwhile; nothing to upload)."""
        src = self.local / rel
        dest = f"{self.remote}/{rel}"
        try:
            if rel.endswith(".db"):  # sqlite (Optuna, MLflow): upload a consistent snapshot
                with tempfile.TemporaryDirectory(prefix="rsb-db-") as d:
                    snap = Path(d) / "snapshot.db"
                    con, out = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True), sqlite3.connect(snap)
                    try:
                        con.backup(out)
                    finally:
                        con.close()
                        out.close()
                    self._put(snap, dest)
            else:
                self._put(src, dest)
        except FileNotFoundError:
            return False
        return True

    def _put(self, src: Path, dest: str) -> None:
        with open(src, "rb") as f, self.fs.open_output_stream(dest) as out:
            shutil.copyfileobj(f, out, 1 << 20)

    def after_flush(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._after.append(fn)

    # --- while a driver holds the study
    def start(self) -> None:
        """Take the lease, make the local copy equal to the store (which may have moved on,
        or hold no study yet: then a stale cache is dropped) and start the uploads."""
        self.lease.acquire()
        try:
            if not self.pull():
                self.reset()
        except BaseException:
            self.lease.release()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"rsb-tune-mirror-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last_renew = time.monotonic()
        while not self._stop.wait(_SYNC_S):
            try:
                self.flush()
                if time.monotonic() - last_renew > _RENEW_S:
                    self.lease.renew()
                    last_renew = time.monotonic()
                if self._failing:
                    print(f"rsb-tune: uploads to {self.remote} work again", file=sys.stderr, flush=True)
                self._failing = False
            except Exception as e:  # noqa: BLE001 - a network blip must not stop the study: retried next tick
                if not self._failing:
                    print(f"rsb-tune: warning: uploading study {self.name!r} failed, retrying ({_one_line(e)})", file=sys.stderr, flush=True)
                self._failing = True

    def stop(self) -> None:
        """Stop the thread, upload the rest and give the lease back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.flush()
        except Exception as e:  # noqa: BLE001
            print(
                f"rsb-tune: warning: the last upload of study {self.name!r} failed ({_one_line(e)}); "
                f"the local copy {self.local} has everything, and the study's next run uploads it",
                file=sys.stderr,
            )
            return  # keep the lease: it expires, and the next run on this host takes it over
        self.lease.release()


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class MirrorLock:
    """The lock of an object-store study: the local ``flock`` of its mirror, then the lease
    in the store and the mirror's uploads (:meth:`Mirror.start`)."""

    def __init__(self, local_lock: StudyLock, mirror: Mirror):
        self.local_lock, self.mirror = local_lock, mirror
        self._held = False

    def acquire(self) -> "MirrorLock":
        self.local_lock.acquire()
        try:
            self.mirror.start()
        except BaseException:
            self.local_lock.release()
            raise
        self._held = True
        return self

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                self.mirror.stop()
            finally:
                self.local_lock.release()

    def __enter__(self):
        return self if self._held else self.acquire()

    def __exit__(self, *exc):
        self.release()
