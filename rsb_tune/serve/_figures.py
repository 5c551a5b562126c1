"""The figures and numbers of a study page, drawn by ``analysis`` (the code of ``rsb-tune
report`` and ``rsb-tune compare``), cached until the study's tables change.

Drawing takes seconds (bootstraps, matplotlib), so it runs in one worker process at a lower
CPU priority than the studies it shows, never in the server's own threads: a page is
answered at once with the figures drawn last, and the new ones replace them when they are
ready. While a study runs its tables change with every finished trial; its figures are
redrawn only while someone looks at them (the first figures at once, from the first finished
trial on), then at most every :data:`REDRAW_S` seconds, and less
often when drawing costs more than :data:`DRAW_SHARE` of one core (a report of 16 seeds takes
~8 s of CPU here: once a minute would be 14 % of a core, taken from the study it shows). The
drawings live in a temporary folder of the server (nothing is written into the storage) and
are scrubbed of the server's paths.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import html
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Figures", "REDRAW_S", "DRAW_SHARE"]

REDRAW_S = 60.0
DRAW_SHARE = 0.02  # while a study runs, its redrawing takes at most this share of one core
_NICE = 19  # the lowest priority: Ray's trial workers run niced themselves
_SERVED = (".png", ".svg", ".html", ".json", ".md")


class Figures:
    """Report folders drawn by a worker process, one per (study or pair, table signature)."""

    def __init__(self, redraw_s: float = REDRAW_S):
        self.redraw_s = redraw_s
        self.root = Path(tempfile.mkdtemp(prefix="rsb-tune-serve-"))
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._jobs: dict[str, tuple[str, concurrent.futures.Future]] = {}  # key -> (version, job)
        self._ready: dict[str, dict[str, Any]] = {}  # key -> the last drawing that finished
        self._started: dict[str, float] = {}
        self._cost: dict[str, float] = {}  # key -> CPU seconds of its last drawing

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ public
    def study(self, name: str, study_dir: Path, signature: tuple, *, running: bool, has_tables: bool) -> dict[str, Any]:
        """{"status": ready|drawing|none, "version", "figures": [names], "summary": {...}, "error"}."""
        if not has_tables:
            return {"status": "none", "version": None, "figures": [], "summary": {}, "error": None}
        return self._get(f"study:{name}", signature, running, "report", (str(study_dir), name))

    def compare(self, a: tuple[str, Path, tuple], b: tuple[str, Path, tuple], *, running: bool) -> dict[str, Any]:
        key = f"compare:{a[0]}:{b[0]}"
        return self._get(key, (a[2], b[2]), running, "compare", (str(a[1]), a[0], str(b[1]), b[0]))

    def file(self, key: str, filename: str) -> Path | None:
        """A file of the drawing of ``key`` shown now, looked up in its folder's listing."""
        with self._lock:
            ready = self._ready.get(key)
        if ready is None or not filename.endswith(_SERVED) or filename not in ready["files"]:
            return None
        return Path(ready["dir"]) / filename

    def files(self, key: str) -> list[Path]:
        """Every file of the drawing of ``key`` shown now (none drawn: [])."""
        with self._lock:
            ready = self._ready.get(key)
        if ready is None or not ready.get("dir"):
            return []
        return [Path(ready["dir"]) / f for f in sorted(ready["files"]) if f.endswith(_SERVED)]

    # ------------------------------------------------------------------ internals
    def _get(self, key: str, signature: tuple, running: bool, what: str, args: tuple) -> dict[str, Any]:
        version = hashlib.sha1(repr(signature).encode()).hexdigest()[:12]
        with self._lock:
            self._collect(key)
            ready = self._ready.get(key)
            job = self._jobs.get(key)
            stale = ready is None or ready["version"] != version
            every = max(self.redraw_s, self._cost.get(key, 0.0) / DRAW_SHARE)
            # a drawing with figures holds the next one back; one without (no finished trial yet)
            # does not: the first figures are drawn as soon as the tables have them
            throttled = running and ready is not None and bool(ready["figures"]) and time.monotonic() - self._started.get(key, 0) < every
            if stale and job is None and not throttled:
                out = self.root / f"{key.replace(':', '_')}-{version}"
                self._jobs[key] = (version, self._submit(_draw, what, args, str(out)))
                self._started[key] = time.monotonic()
                job = self._jobs[key]
        if ready is None:
            return {"status": "drawing" if job else "none", "version": None, "figures": [], "summary": {}, "error": None}
        status = "drawing" if (job is not None or stale) else "ready"
        return {**{k: ready[k] for k in ("version", "figures", "summary", "error")}, "status": status, "key": key}

    def _submit(self, fn, *args) -> concurrent.futures.Future:
        if self._pool is None:
            import multiprocessing

            self._pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority)
        return self._pool.submit(fn, *args)

    def _collect(self, key: str) -> None:
        """Move a finished job of ``key`` to the drawings shown (under the lock)."""
        version, job = self._jobs.get(key, (None, None))
        if job is None or not job.done():
            return
        del self._jobs[key]
        try:
            result = job.result()
        except Exception as e:  # noqa: BLE001 - a crashed worker: say so on the page, no traceback
            from rsb_tune.serve._safe import scrub_text

            result = {"dir": None, "figures": [], "summary": {}, "error": scrub_text(f"drawing failed ({type(e).__name__})")}
        self._cost[key] = result.pop("cpu_s", 0.0)
        old = self._ready.get(key)
        files = set(os.listdir(result["dir"])) if result["dir"] and os.path.isdir(result["dir"]) else set()
        self._ready[key] = {**result, "version": version, "files": files}
        if old and old.get("dir") and old["dir"] != result["dir"]:
            shutil.rmtree(old["dir"], ignore_errors=True)


def _lower_priority() -> None:
    try:
        os.nice(max(0, _NICE - os.nice(0)))
    except OSError:
        pass


def _draw(what: str, args: tuple, out: str) -> dict[str, Any]:
    """In the worker: write the report (or comparison) into ``out``; its scrubbed summary."""
    from analysis.report import write_compare_report, write_report

    from rsb_tune.serve._safe import scrub, scrub_text

    cpu0 = time.process_time()
    try:
        if what == "report":
            study_dir, name = args
            write_report(study_dir, out)
            dirs = {study_dir: name}
        else:
            dir_a, name_a, dir_b, name_b = args
            write_compare_report(dir_a, dir_b, out)
            dirs = {dir_a: name_a, dir_b: name_b}
    except (ValueError, OSError) as e:  # analysis.StudyError: a missing or torn table, no ok trial
        shutil.rmtree(out, ignore_errors=True)
        return {"dir": None, "figures": [], "summary": {}, "error": scrub_text(str(e))}
    summary = json.loads((Path(out) / "summary.json").read_text())
    replaced = {**dirs, **{str(Path(d).resolve()): n for d, n in dirs.items()}}
    for name in ("index.html", "summary.md"):
        path = Path(out) / name
        text = path.read_text()
        for d, n in sorted(replaced.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(d, n).replace(html.escape(d), n)
        for s in _strings(summary):
            if scrub_text(s) != s:
                text = text.replace(html.escape(s), html.escape(scrub_text(s))).replace(s, scrub_text(s))
        path.write_text(text)
    summary = scrub(_replace(summary, replaced))
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return {"dir": out, "figures": list(summary.get("figures") or []), "summary": summary, "error": None, "cpu_s": time.process_time() - cpu0}


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _replace(value: Any, replaced: dict[str, str]) -> Any:
    if isinstance(value, str):
        for d, n in sorted(replaced.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(d, n)
        return value
    if isinstance(value, dict):
        return {k: _replace(v, replaced) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, replaced) for v in value]
    return value
