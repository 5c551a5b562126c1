"""Helpers shared by the benchmark scripts: running the real CLI in a subprocess, sampling the
memory and CPU of its whole process tree, reading a study's timeline back from its event logs,
and printing figures (a table, then one ``RESULT {json}`` line).

Each script in ``benchmarks/`` imports this module from its own directory, so every script runs
on its own: ``python benchmarks/study_overhead.py``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "ProcTreeSampler",
    "run_cli",
    "study_timeline",
    "machine_info",
    "sgemm_gflops",
    "calibration",
    "print_calibration",
    "print_table",
    "emit_result",
    "median",
    "fit_line",
    "run_seed_study",
    "seed_study_args",
    "default_slots",
    "cli_env",
]

REPO = Path(__file__).resolve().parent.parent
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": cpus,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def _isa() -> str | None:
    """The widest vector ISA torch dispatches to on this CPU (``AVX2``, ``AVX512``, ...)."""
    try:
        import torch

        return torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        return None


def sgemm_gflops(threads: int = 1, n: int = 1024, repeats: int = 7) -> float:
    """This machine's float32 matrix-multiply rate in GFLOP/s on ``threads`` torch threads: the
    best of ``repeats`` n x n products (2 n^3 flops each). The best, not the median: it is the
    core's capability, and other users' work on a shared machine only ever lowers it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)  # warm-up: oneDNN/BLAS kernels and pages
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t)
        return 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(before)


_CALIBRATION: dict[str, Any] | None = None


def calibration() -> dict[str, Any]:
    """The calibration printed beside every throughput figure (measured once per process): the
    single-thread sgemm rate, the ISA and the CPUs, so that figures from different machines can
    be read together (images/s divided by GFLOP/s is roughly machine-independent for the
    convolution-bound part of an epoch)."""
    global _CALIBRATION
    if _CALIBRATION is None:
        _CALIBRATION = {
            "sgemm_1thread_gflops": round(sgemm_gflops(1), 1),
            "isa": _isa(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        }
    return _CALIBRATION


def print_calibration() -> dict[str, Any]:
    c = calibration()
    print(f"calibration: single-thread sgemm {c['sgemm_1thread_gflops']} GFLOP/s (1024^3, best of 7), ISA {c['isa']}, {c['cpus']} CPUs")
    return c


# --------------------------------------------------------------------------- process tree sampling


def _role(cmdline: str, is_root: bool) -> str:
    """Group a process of the study's tree: the driver, trial actors, Ray's own services."""
    if is_root:
        return "driver"
    if "multiprocessing.spawn" in cmdline:  # the local executor's pool (its manager, a few CPU seconds, too)
        return "trial"
    if cmdline.startswith("ray::ImplicitFunc") or cmdline.startswith("ray::_trainable") or "ImplicitFunc" in cmdline:
        return "trial"
    if cmdline.startswith("ray::IDLE") or cmdline.startswith("ray::"):
        return "ray_worker" if "Agent" not in cmdline else "ray_services"
    return "ray_services"


class _Proc:
    """Per-process readings from /proc (psutil when it is importable gives the same numbers)."""

    @staticmethod
    def children_map() -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            kids.setdefault(ppid, []).append(int(name))
        return kids

    @staticmethod
    def read(pid: int) -> tuple[int, float, str, float] | None:
        """(rss bytes, cpu seconds user+system, cmdline, start ticks since boot) or None."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / _TICK
            rss = int(fields[21]) * _PAGE
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            return rss, cpu, cmd, int(fields[19]) / _TICK
        except (OSError, IndexError, ValueError):
            return None

    @staticmethod
    def busy_seconds() -> float:
        """CPU seconds the whole machine has spent busy since boot (all processes)."""
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return (sum(v[:8]) - v[3] - v[4]) / _TICK  # minus idle and iowait
        except (OSError, ValueError, IndexError):
            return 0.0

    @staticmethod
    def pss(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None


class ProcTreeSampler:
    """Samples the process tree under ``root_pid`` every ``interval`` seconds in a thread:
    total RSS and PSS (PSS counts shared pages once, so it is the honest sum), the peak RSS of
    each process, and each process's CPU seconds, grouped by role (driver, trial, ray_services,
    ray_worker). Linux /proc only; without /proc it records nothing. The sampler itself uses
    about 1-2 % of one core (reported with the other processes in ``foreign_cpu_s``)."""

    def __init__(self, root_pid: int, interval: float = 1.0, pss_every: int = 5):
        self.root = root_pid
        self.interval = interval
        self.pss_every = pss_every  # smaps_rollup is costly to read: PSS every few samples
        self.peak_rss_total = 0
        self.peak_pss_total = 0
        self.peak_rss: dict[int, int] = {}
        self.peak_pss: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.role: dict[int, str] = {}
        self.cmd: dict[int, str] = {}
        self.started: dict[int, float] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._have_proc = os.path.isdir("/proc/self")

    def __enter__(self):
        self._busy0 = _Proc.busy_seconds()
        self._load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        if self._have_proc:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.busy = _Proc.busy_seconds() - self._busy0

    def _tree(self) -> list[int]:
        kids = _Proc.children_map()
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(kids.get(pid, []))
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss_total = pss_total = 0
            pss_round = self.samples % self.pss_every == 0
            for pid in self._tree():
                got = _Proc.read(pid)
                if got is None:
                    continue
                rss, cpu, cmd, start = got
                rss_total += rss
                if pss_round:
                    pss = _Proc.pss(pid) or rss
                    pss_total += pss
                    self.peak_pss[pid] = max(self.peak_pss.get(pid, 0), pss)
                self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), rss)
                self.cpu[pid] = cpu
                self.started.setdefault(pid, start)
                # Ray workers rename themselves (ray::IDLE, then ray::ImplicitFunc.train): the
                # latest name that is not IDLE wins.
                # An exiting process (zombie) reads as an empty cmdline: keep the last name.
                if pid not in self.cmd or (cmd and not cmd.startswith("ray::IDLE")):
                    self.cmd[pid] = cmd
                    self.role[pid] = _role(cmd, pid == self.root)
            self.peak_rss_total = max(self.peak_rss_total, rss_total)
            self.peak_pss_total = max(self.peak_pss_total, pss_total)
            self.samples += 1
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        cpu_by_role: dict[str, float] = {}
        for pid, c in self.cpu.items():
            cpu_by_role[self.role[pid]] = cpu_by_role.get(self.role[pid], 0.0) + c
        trial_peaks = [r for pid, r in self.peak_rss.items() if self.role[pid] == "trial"]
        trial_pss = [r for pid, r in self.peak_pss.items() if self.role[pid] == "trial"]
        tree_cpu = sum(self.cpu.values())
        trial_starts = [t for pid, t in self.started.items() if self.role[pid] == "trial"]
        driver_peak = self.peak_rss.get(self.root, 0)
        return {
            "samples": self.samples,
            "peak_tree_rss_mb": round(self.peak_rss_total / 2**20, 1),
            "peak_tree_pss_mb": round(self.peak_pss_total / 2**20, 1),
            "peak_trial_rss_mb": round(max(trial_peaks) / 2**20, 1) if trial_peaks else None,
            "peak_trial_pss_mb": round(max(trial_pss) / 2**20, 1) if trial_pss else None,
            "peak_driver_rss_mb": round(driver_peak / 2**20, 1),
            # CPU seconds the machine spent on processes outside this tree while it ran (other
            # users' work): a benchmark is clean when this is near zero
            "foreign_cpu_s": round(max(0.0, getattr(self, "busy", 0.0) - tree_cpu), 1),
            "cpu_s_by_role": {k: round(v, 1) for k, v in sorted(cpu_by_role.items())},
            "n_trial_processes": len(trial_starts),
            # seconds from the driver's process start (same clock: ticks since boot)
            "first_trial_process_start_s": round(min(trial_starts) - self.started[self.root], 2) if trial_starts and self.root in self.started else None,
            "top_cpu_processes": [
                {"cmd": self.cmd[pid][:70], "role": self.role[pid], "cpu_s": round(c, 1)}
                for pid, c in sorted(self.cpu.items(), key=lambda kv: -kv[1])[:8]
            ],
        }


# --------------------------------------------------------------------------- CLI runs


def rsb_tune_command() -> list[str]:
    """The CLI of the checkout this file is in: ``python -m rsb_tune`` (the ``rsb-tune``
    console script's ``main``) with that checkout first on PYTHONPATH, so a benchmark measures
    its own tree, not whichever copy is installed."""
    return [sys.executable, "-m", "rsb_tune"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""), **(extra or {})}


# Runs the real CLI (rsb_tune.cli.main) with its phases timed, written as JSON lines to
# $RSB_BENCH_TRACE: the CLI's own timing records (the public logger "rsb_tune.timing" at DEBUG:
# dataset decode, model check, warm-up, Ray's import and start, the trials, each table write),
# plus the bootstrap's import of the CLI and Ray's shutdown. Nothing of the CLI is patched.
_TRACE_BOOT = r"""
import json, logging, os, sys, time
_t = time.time()
def _mark(name, t0, t1):
    with open(os.environ["RSB_BENCH_TRACE"], "a") as f:
        f.write(json.dumps({"phase": name, "t0": t0, "t1": t1}) + "\n")
_mark("interpreter_ready", _t, _t)
class _Trace(logging.Handler):
    def emit(self, record):
        _mark(record.phase, record.t0, record.t1)
t0 = time.time()
import rsb_tune.cli as cli
_mark("import_cli", t0, time.time())
timing = logging.getLogger("rsb_tune.timing")
timing.setLevel(logging.DEBUG)
timing.addHandler(_Trace())
timing.propagate = False
sys.argv = ["rsb-tune"] + sys.argv[1:]
t0 = time.time()
try:
    rc = cli.main()
finally:
    _mark("main", t0, time.time())
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        t0 = time.time()
        sys.modules["ray"].shutdown()  # what the exit handlers do anyway (atexit), timed
        _mark("ray_shutdown", t0, time.time())
cli.exit_now(rc)  # as the rsb-tune command ends
"""


def trace_phases(path: Path, t_start: float, t_end: float) -> dict[str, Any]:
    """Sum of each traced phase's seconds (``write_tables`` summed over its calls) and the
    exit time after main() returned (Ray's shutdown at interpreter exit)."""
    phases: dict[str, float] = {}
    counts: dict[str, int] = {}
    main_end = None
    for line in Path(path).read_text().splitlines():
        ev = json.loads(line)
        phases[ev["phase"]] = phases.get(ev["phase"], 0.0) + ev["t1"] - ev["t0"]
        counts[ev["phase"]] = counts.get(ev["phase"], 0) + 1
        if ev["phase"] == "interpreter_ready":
            phases["interpreter_start"] = ev["t0"] - t_start
        if ev["phase"] in ("main", "ray_shutdown"):
            main_end = max(main_end or 0.0, ev["t1"])
    phases.pop("interpreter_ready", None)
    if main_end is not None:
        phases["exit_after_main"] = t_end - main_end  # after main() and ray.shutdown(): interpreter teardown
    out = {k: round(v, 3) for k, v in phases.items()}
    out["write_tables_calls"] = counts.get("write_tables", 0)
    return out


def run_cli(args: Sequence[str], *, sample: bool = True, interval: float = 1.0, env: Mapping[str, str] | None = None, log: Path | None = None, trace: Path | None = None) -> dict[str, Any]:
    """Run ``rsb-tune ARGS`` to completion; wall time from just before the process is spawned
    to its exit, and the sampled process tree. With ``trace``, the CLI runs under a bootstrap
    that timestamps its phases (see :func:`trace_phases`)."""
    cmd = [*rsb_tune_command(), *args]
    env = dict(env or {})
    if trace is not None:
        cmd = [sys.executable, "-c", _TRACE_BOOT, *args]
        env["RSB_BENCH_TRACE"] = str(trace)
    out = open(log, "w") if log else subprocess.DEVNULL
    t_start = time.time()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=cli_env(env), cwd=str(REPO))
    if sample:
        with ProcTreeSampler(proc.pid, interval) as sampler:
            rc = proc.wait()
        tree = sampler.summary()
    else:
        rc, tree = proc.wait(), {}
    t_end = time.time()
    if log:
        out.close()
    if rc != 0:
        tail = Path(log).read_text()[-3000:] if log else ""
        raise RuntimeError(f"rsb-tune {' '.join(args)} exited {rc}\n{tail}")
    run = {"cmd": " ".join(["rsb-tune", *args]), "t_start": t_start, "t_end": t_end, "wall_s": t_end - t_start, "tree": tree}
    if trace is not None:
        run["phases"] = trace_phases(trace, t_start, t_end)
    return run


def study_timeline(study_dir: Path, t_start: float, t_end: float, slots: int) -> dict[str, Any]:
    """Where a study's wall time went, from its tables and event logs.

    ``compute_s``: the sum of every epoch's in-trial ``epoch_time_s`` (train + eval of the
    epoch, measured inside the trial). A trial "starts" when its first epoch starts: first
    result time minus that epoch's ``epoch_time_s``; setup before epoch 1 (model build, eval
    set transform) counts as overhead. ``startup_s``: process start to the first trial start.
    ``tail_s``: last result to process exit. ``per_epoch_overhead_s``: median gap between two
    consecutive results of a trial minus the later epoch's own time (report, checkpoint,
    the driver's round trip). ``between_trials_s``: median gap on a slot from a trial's last
    result to the next trial's first-epoch start.
    """
    import pandas as pd

    epochs = pd.read_parquet(study_dir / "epochs.parquet")
    trials = pd.read_parquet(study_dir / "trials.parquet")
    compute = float(epochs["epoch_time_s"].sum())
    starts, ends, epoch_gaps = [], [], []
    for path in sorted((study_dir / "events").glob("*.jsonl")):
        res = [e for e in map(json.loads, path.read_text().splitlines()) if e.get("type") == "result"]
        if not res:
            continue
        starts.append(res[0]["time"] - res[0]["epoch_time_s"])
        ends.append(res[-1]["time"])
        epoch_gaps += [b["time"] - a["time"] - b["epoch_time_s"] for a, b in zip(res, res[1:])]
    # Slot gaps: sort the trial intervals; with `slots` slots, each trial start is served by the
    # earliest-finished free slot.
    intervals = sorted(zip(starts, ends))
    free = sorted(e for _, e in intervals[:slots])
    between = []
    for s, e in intervals[slots:]:
        f = free.pop(0)
        between.append(s - f)
        free.append(e)
        free.sort()
    ideal = compute / slots
    wall = t_end - t_start
    out = {
        "n_trials": int(len(trials)),
        "epochs_per_trial": int(epochs.groupby("trial_id")["epoch"].max().median()) if len(epochs) else 0,
        "wall_s": round(wall, 2),
        "compute_s": round(compute, 2),
        "slots": slots,
        "ideal_wall_s": round(ideal, 2),
        "efficiency": round(wall / ideal, 4) if ideal > 0 else None,
        "startup_s": round(min(starts) - t_start, 2) if starts else None,
        "first_result_s": round(min(ends) - t_start, 2) if ends else None,
        "tail_s": round(t_end - max(ends), 2) if ends else None,
        "steady_s": round(max(ends) - min(starts), 2) if starts else None,
        "per_epoch_overhead_s": round(statistics.median(epoch_gaps), 4) if epoch_gaps else None,
        "per_epoch_overhead_mean_s": round(statistics.fmean(epoch_gaps), 4) if epoch_gaps else None,
        "between_trials_s": round(statistics.median(between), 3) if between else None,
        "trial_compute_s_median": round(float(epochs.groupby("trial_id")["epoch_time_s"].sum().median()), 3) if len(epochs) else None,
        "epoch_time_s_median": round(float(epochs["epoch_time_s"].median()), 4) if len(epochs) else None,
    }
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    for split in ("val", "v2"):
        col = f"{split}_top1"
        if col in ok and len(ok):
            out[f"{col}_mean"] = round(float(ok[col].mean()), 3)
            out[f"{col}_std"] = round(float(ok[col].std(ddof=1)), 3) if len(ok) > 1 else None
            out[f"{col}_min"] = round(float(ok[col].min()), 3)
            out[f"{col}_max"] = round(float(ok[col].max()), 3)
    out["n_ok"] = int(len(ok))
    return out


def seed_study_args(*, n: int, recipe: str, storage: Path, name: str, epochs: int | None = None, sets: Sequence[str] = (),
                    cpus_per_trial: float = 1.0, device: str = "auto", gpus_per_trial: float = 0.5, executor: str | None = None) -> list[str]:  # fmt: skip
    """The CLI arguments of ``rsb-tune seeds --n N --recipe R --storage S --quiet`` and options."""
    out = ["seeds", "--n", str(n), "--recipe", recipe, "--storage", str(storage), "--name", name, "--quiet"]
    if executor:
        out += ["--executor", executor]
    if cpus_per_trial != 1.0:
        out += ["--cpus-per-trial", f"{cpus_per_trial:g}"]
    if epochs is not None:
        out += ["--epochs", str(epochs)]
    if device == "cuda":
        out += ["--gpus-per-trial", f"{gpus_per_trial:g}", "--set", "device=cuda"]
    elif device == "cpu":
        out += ["--set", "device=cpu"]
    for item in sets:
        out += ["--set", item]
    return out


def run_seed_study(*, n: int, recipe: str = "A2", epochs: int | None = None, sets: Sequence[str] = (), cpus_per_trial: float = 1.0,
                   device: str = "auto", gpus_per_trial: float = 0.5, keep: bool = False, trace: bool = True, tag: str = "",
                   storage_uri: str | None = None, executor: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one seed study through the CLI in a temporary storage directory (or in the object
    store ``storage_uri``, mirrored under the temporary directory) and return its timeline
    (:func:`study_timeline`), the driver's phases and the process tree's figures."""
    with temp_storage("rsb-bench-", keep=keep) as storage:  # kept: the caller removes row["tmp_dir"]
        # a cache of its own (an object store's local copy is found there), or with
        # $RSB_BENCH_CACHE_DIR one shared by the runs (the decoded digits kept, as on a machine
        # that has run a study before)
        shared = os.environ.get("RSB_BENCH_CACHE_DIR") if not storage_uri else None
        env = {"RSB_TUNE_CACHE_DIR": shared or str(storage / "cache")}
        args = seed_study_args(n=n, recipe=recipe, storage=storage_uri or storage, name="bench", epochs=epochs, sets=sets,
                               cpus_per_trial=cpus_per_trial, device=device, gpus_per_trial=gpus_per_trial, executor=executor)  # fmt: skip
        run = run_cli(args, env=env, log=storage / "cli.log", trace=storage / "trace.jsonl" if trace else None)
        slots = default_slots(cpus_per_trial, n) if device != "cuda" else max(1, min(n, int(1 / gpus_per_trial)))
        study_dir = storage / "bench"
        if storage_uri:  # the driver's local copy, the only study in this run's cache
            study_dir = next(Path(env["RSB_TUNE_CACHE_DIR"], "mirror").glob("*/bench"))
        row = {"run": tag, **study_timeline(study_dir, run["t_start"], run["t_end"], slots), "study_dir": str(study_dir), "tmp_dir": str(storage)}
        row["phases"] = run.get("phases", {})
        row["trial_process_start_s"] = run["tree"].get("first_trial_process_start_s")
        row["tree"] = run["tree"]
        row["cmd"] = run["cmd"].replace(str(storage), "<tmp>")
        return row


def default_slots(cpus_per_trial: float = 1.0, n_trials: int | None = None) -> int:
    """Trials Ray runs at once on this machine: the CPUs Ray sees over CPUs per trial."""
    cpus = os.cpu_count() or 1
    slots = max(1, int(cpus // cpus_per_trial))
    return min(slots, n_trials) if n_trials else slots


@contextlib.contextmanager
def temp_storage(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A fresh temporary folder for a benchmark's studies: removed at the end, or kept (and
    its path printed on stderr) with ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- printing


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares y = intercept + slope * x, with R^2 and the largest relative residual."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    icpt = my - slope * mx
    ss_res = sum((y - (icpt + slope * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    worst = max(abs(y - (icpt + slope * x)) / y for x, y in zip(xs, ys)) if all(ys) else float("nan")
    return {"intercept": icpt, "slope": slope, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0, "max_rel_residual": worst}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """A plain-text table (also valid Markdown)."""
    if not rows:
        return
    cols = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    if title:
        print(f"\n{title}")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths)) + " |")


def emit_result(name: str, payload: Mapping[str, Any]) -> None:
    """The calibration line (:func:`print_calibration`), then the machine-readable last line:
    ``RESULT {"benchmark": name, "machine": {..., "calibration": {...}}, ...}``."""
    machine = {**machine_info(), "calibration": print_calibration()}
    print("RESULT " + json.dumps({"benchmark": name, "machine": machine, **payload}, default=float, sort_keys=False), flush=True)
