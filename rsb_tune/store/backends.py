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
older than :data:`LEASE_TTL_S`, or held by a dead process on this host, is taken over; a
driver whose lease was taken over stops. Without conditional writes the lease is
best-effort: two drivers started within the same second on different hosts could both see
it free (each reads its lease back after a pause, which narrows that window to requests in
flight at the same time).

Nothing is lost when an upload fails: the local copy keeps the changes, and the next run on
that machine uploads them first, unless another driver has moved the store on since (the
store's ``.sync`` token says which), in which case the store wins.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import contextlib
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
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from rsb_tune._log import logger
from rsb_tune.errors import StoreUnreachable, StudyError, UserError, arg

__all__ = ["Location", "locate", "check_writable", "check_listable", "bounded", "one_line", "atomic_write_text", "StudyLock", "MirrorLock", "Mirror", "Lease", "LEASE_TTL_S", "cache_dir", "pid_alive"]

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

LEASE_TTL_S = 120.0  # a lease not renewed for this long belongs to a driver that died
_RENEW_S = 20.0  # how often a running driver renews its lease
_SYNC_S = 2.0  # how often the mirror uploads what changed
_SETTLE_S = 1.0  # pause before reading a freshly written lease back
_MARK = ".sync"  # in the store: the token of the lease holder's last upload
_STATE = ".sync.json"  # in the local copy: the token and file signatures it agrees with the store on
# dot files (the lock, the lease, the sync state, files being written before their atomic
# rename), sqlite's side files (a database is uploaded as a snapshot) and Ray's part, which
# Ray writes itself
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

    def uri(self, path: str) -> str:
        """``path`` on this object store as a URI with the store's options (an S3 endpoint, a
        region): what a process elsewhere opens it by (:func:`pyarrow.fs.FileSystem.from_uri`)."""
        scheme, query = self.spec.split("://", 1)[0], self.spec.partition("?")[2]
        return f"{scheme}://{path}" + (f"?{query}" if query else "")

    def display(self, name: str | None = None) -> str:
        """The URI (without its query) or the directory, optionally of one study."""
        base = self.spec.split("?", 1)[0].rstrip("/") if self.remote else str(self.root)
        return f"{base}/{name}" if name else base


def printable(text: str) -> str:
    """``text`` on one line: a control character (a newline in a name) as its escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def locate(spec: str | os.PathLike) -> Location:
    """Parse ``--storage``; a URI is resolved to its pyarrow filesystem (no request yet). Not
    text or a path, empty, blank or holding a control character: a UserError naming it (an
    empty one would be the current directory)."""
    if not isinstance(spec, (str, os.PathLike)):
        raise UserError(f"{arg('storage', spec)}: a directory or an object-store URI, not {type(spec).__name__}")
    spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip() or any(ord(c) < 32 or ord(c) == 127 for c in spec):
        why = "empty" if isinstance(spec, str) and not spec.strip() else "not a usable path (control characters)"
        raise UserError(printable(f"{arg('storage', spec)}: {why}; name a directory or an object-store URI"))
    if spec.startswith("file://"):
        spec = spec[len("file://") :]
    if not _URI_RE.match(spec):
        return Location(spec, Path(spec).expanduser().resolve())
    import pyarrow.fs

    try:
        fs, fs_root = pyarrow.fs.FileSystem.from_uri(spec)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{arg('storage', spec)}: {first} (use a directory, or s3://BUCKET/PREFIX, gs://BUCKET/PREFIX)") from None
    fs_root = fs_root.rstrip("/")
    if not fs_root:
        raise UserError(f"{arg('storage', spec)}: name a bucket (s3://BUCKET/PREFIX)")
    key = hashlib.sha1(spec.encode()).hexdigest()[:16]
    return Location(spec, cache_dir() / "mirror" / key, fs, fs_root)


def check_writable(loc: Location) -> None:
    """Fail before anything is written when the storage cannot take a study."""
    if not loc.remote:
        probe_dir = loc.root
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
            raise UserError(f"{arg('storage', loc.spec)}: not writable ({probe_dir} is not a writable directory)")
        return
    probe = f"{loc.fs_root}/.rsb-tune-probe-{uuid.uuid4().hex[:8]}"

    def write_probe():
        loc.fs.create_dir(loc.fs_root)
        with loc.fs.open_output_stream(probe) as f:
            f.write(b"probe")
        loc.fs.delete_file(probe)

    bounded(write_probe, arg("storage", loc.display()), "cannot write there")


def check_listable(loc: Location) -> None:
    """Fail with one line naming the storage when it cannot hold studies to list: a directory
    that does not exist (an object-store prefix without studies is only empty)."""
    if not loc.remote and not loc.root.is_dir():
        resolved = "" if str(loc.root) == loc.spec else f" ({loc.root})"
        raise StudyError(f"{arg('storage', loc.spec)}: no such directory{resolved}")


def bounded(fn: Callable[[], Any], where: str, failed: str) -> Any:
    """``fn()``, its errors as one-line UserErrors, and a bounded wait: an unreachable store is
    retried by its client for up to 15 minutes (GCS), a user should know in seconds."""
    timeout = _store_timeout()
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
    if isinstance(error, UserError):
        raise error
    if error is not None:  # network, credentials, missing bucket: OSErrors from pyarrow
        raise UserError(f"{where}: {failed} ({one_line(error)})")
    return value


def _capture(fn) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - handed to the caller's thread
        return None, e


def one_line(e: BaseException) -> str:
    """An exception as one line of at most about 300 characters, for a user-facing message."""
    text = " ".join(str(e).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(e).__name__


@contextlib.contextmanager
def replacing(path: Path):
    """The temporary dot file ``.<name>.<pid>.tmp`` beside ``path`` for the block to write,
    renamed over ``path`` when the block ends: a reader finds the old file or the new one, never
    half of one. A write that fails (OSError: a full disk) removes it; the old file stays whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` through a fsynced temporary dot file and a rename: never half-written."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


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

    def holder(self) -> tuple[int, str] | None:
        """(pid, host) that the lock file names, or None (no file, or no driver named)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        m = re.fullmatch(r"pid (\d+) on (\S+)", text)
        return (int(m.group(1)), m.group(2)) if m else None

    def held(self) -> bool:
        """Whether a driver holds the lock now, read without locking: the holder's pid and host
        are in the file; on this host, whether that process lives (a dead driver's file stays).
        A holder on another host is taken to be alive (its kernel holds the flock)."""
        named = self.holder()
        if named is None:
            return False
        pid, host = named
        if host != os.uname().nodename:
            return True
        if not pid_alive(pid):
            return False
        if pid != os.getpid():
            return True
        fd = os.open(self.path, os.O_RDONLY)  # our own pid: whether this process still holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # no holder named: readers see that no driver runs
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
        """Rewrite the lease; StudyError if another driver took it over meanwhile (this one's
        renewals failed for longer than the TTL): the study is theirs now."""
        if not self.held:
            return
        held, _ = self._read()
        if held and held.get("token") != self.token:
            self.held = False
            raise StudyError(
                f"study {self.name!r}: its lease was taken over by pid {held.get('pid')} on {held.get('host')} "
                f"(this driver could not renew it for {self.ttl:g} s); this driver stops"
            )
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

    ``refresh`` makes the copy current: it downloads the store's study (all but Ray's
    checkpoints), unless the store is unchanged since this copy's own last upload or download
    (then the copy is kept, with any changes a failed upload left, which go up next). The
    store's ``.sync`` object holds a token written after each upload by the lease holder, and
    ``.sync.json`` in the copy the token and file signatures it last agreed with the store on.

    ``flush`` uploads the files changed since (sqlite databases through a consistent
    snapshot); ``start``/``stop`` run it and the lease renewal on a thread while a driver
    holds the study. Actions queued with ``after_flush`` (deleting a superseded checkpoint)
    run once the files changed before them are in the store.
    """

    def __init__(self, fs, remote: str, local: Path, name: str):
        self.fs, self.remote, self.local, self.name = fs, remote.rstrip("/"), local, name
        self.lease = Lease(fs, f"{self.remote}/.lease", name)
        self._uploaded: dict[str, tuple] = {}  # relative path -> signature of the file last in the store
        self._token: str | None = None  # the store's .sync token this copy agrees with
        self._after: list[Callable[[], None]] = []
        self._after_lock = threading.Lock()
        self._lock = threading.RLock()  # one pull or flush at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._lost = False  # the lease was taken over: nothing more is uploaded

    def __getstate__(self):  # Ray pickles the Tuner's callbacks (tuner.pkl): no thread state
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_after_lock", "_stop", "_thread", "_after")}

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.RLock(), _after_lock=threading.Lock(), _stop=threading.Event(), _thread=None, _after=[])

    # --- store -> local
    def exists_remotely(self) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(f"{self.remote}/study.yaml").type == pyarrow.fs.FileType.File

    def refresh(self) -> bool:
        """Make the local copy current (see the class); False when the store has no study here
        (a token in the store means a study: it is written after the study's first upload)."""
        state, mark = self._load_state(), self._read_mark()
        if state is not None and mark is not None and state["token"] == mark:
            with self._lock:
                self._uploaded = {rel: tuple(sig) for rel, sig in state["uploaded"].items()}
                self._token = mark
            return True
        return self.pull()

    def pull(self) -> bool:
        """Download the study into the local copy, dropping local files the store lacks;
        False (and nothing touched) when the store has no study here."""
        import pyarrow.fs

        if not self.exists_remotely():
            return False
        mark = self._read_mark()  # before the listing: a later upload makes it stale, never wrong
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
            self._token = mark
            self._save_state()
        return True

    def _download(self, rel: str, remote_path: str) -> None:
        dest = self.local / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with replacing(dest) as tmp, self.fs.open_input_stream(remote_path) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)

    def fetch(self, rel: str) -> Path:
        """One file of the store's study (``rel``: relative to it; also one that is not mirrored,
        such as a checkpoint under ``ray/``) downloaded into the local copy, unless a copy of the
        same size is there already; returns the local file."""
        import pyarrow.fs

        info = self.fs.get_file_info(f"{self.remote}/{rel}")
        if info.type != pyarrow.fs.FileType.File:
            raise FileNotFoundError(f"{self.remote}/{rel}")
        dest = self.local / rel
        if not (dest.is_file() and dest.stat().st_size == info.size):
            self._download(rel, info.path)
        return dest

    def reset(self) -> None:
        """Empty the local copy (a new study must not inherit a stale cache)."""
        with self._lock:
            for rel in list(self._local_files()):
                (self.local / rel).unlink()
            self._uploaded, self._token = {}, None
            (self.local / _STATE).unlink(missing_ok=True)

    # --- the agreement between copy and store
    def _read_mark(self) -> str | None:
        try:
            with self.fs.open_input_stream(f"{self.remote}/{_MARK}") as f:
                return f.read().decode().strip() or None
        except FileNotFoundError:
            return None

    def _load_state(self) -> dict | None:
        try:
            state = json.loads((self.local / _STATE).read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(state, dict) and isinstance(state.get("token"), str) and isinstance(state.get("uploaded"), dict)
        return state if ok else None

    def _save_state(self) -> None:
        atomic_write_text(self.local / _STATE, json.dumps({"token": self._token, "uploaded": self._uploaded}))

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
        relative directory); returns how many. Only the lease holder moves the store's token."""
        with self._after_lock:  # queued before this scan: their successors' records are in it
            after, self._after = self._after, []
        with self._lock:
            if self._lost:
                return 0
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
                if self.lease.held:
                    self._token = uuid.uuid4().hex
                    with self.fs.open_output_stream(f"{self.remote}/{_MARK}") as f:
                        f.write(self._token.encode())
                    self._save_state()
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
        with self._after_lock:
            self._after.append(fn)

    # --- while a driver holds the study
    def start(self) -> None:
        """Take the lease, make the local copy current (or drop a stale cache when the store
        holds no study yet) and start the uploads."""
        try:
            self.lease.acquire()
        except OSError as e:
            raise StudyError(f"study {self.name!r}: cannot take its lease in the store ({one_line(e)})") from None
        try:
            if not self.refresh():
                self.reset()
        except BaseException as e:
            self._give_back()
            if isinstance(e, OSError):
                raise StudyError(f"study {self.name!r}: cannot read it from the store ({one_line(e)})") from None
            raise
        self._stop.clear()
        self._lost = False
        self._thread = threading.Thread(target=self._loop, name=f"rsb-tune-mirror-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last_renew = time.monotonic()
        while not self._stop.wait(_SYNC_S):
            try:
                self.flush()
                if self._failing:
                    logger.info("rsb-tune: uploads of study %r work again", self.name)
                self._failing = False
            except Exception as e:  # noqa: BLE001 - a network blip must not stop the study: retried next tick
                if not self._failing:
                    logger.warning(f"uploading study {self.name!r} failed, retrying ({one_line(e)})")
                self._failing = True
            if time.monotonic() - last_renew < _RENEW_S:
                continue
            try:
                self.lease.renew()
                last_renew = time.monotonic()
            except StudyError as e:  # taken over: the study belongs to another driver now
                with self._lock:
                    self._lost = True
                logger.error("%s", e)
                _thread.interrupt_main()  # stops Ray Tune like Ctrl-C
                return
            except Exception as e:  # noqa: BLE001 - retried next tick; the TTL leaves minutes
                logger.warning(f"renewing the lease of study {self.name!r} failed, retrying ({one_line(e)})")

    def stop(self) -> None:
        """Stop the thread, upload the rest and give the lease back. When the last upload
        fails, the lease is kept (it expires; the next run on this host takes it over at once)
        and the next run here uploads what is missing before anything else."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_store_timeout())
            self._thread = None
        if self._lost:
            return
        try:
            bounded(self.flush, f"study {self.name!r}", "the last upload failed")
        except UserError as e:
            text = f"{e}; the local copy {self.local} has everything, and the study's next run on this machine uploads it first"
            raise (StoreUnreachable if isinstance(e, StoreUnreachable) else StudyError)(text) from None
        self._give_back()

    def _give_back(self) -> None:
        try:
            self.lease.release()
        except OSError as e:
            logger.warning(f"could not delete the lease of study {self.name!r} ({one_line(e)}); it expires in {self.lease.ttl:g} s")


def _store_timeout() -> float:
    return float(os.environ.get("RSB_TUNE_STORE_TIMEOUT_S", "30"))


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino  # the inode: an atomic replace within one mtime tick


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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host lives (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
