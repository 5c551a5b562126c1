"""Load on ``rsb-tune serve``, and what it costs a study that runs meanwhile.

The served study is a 100-trial seed study *synthesised* from a real one: a small real study
is run first (``seeds --n 2 --epochs 2``) and its plan, event logs and predictions are copied
100 times with the seed changed and the accuracies jittered, then the tables are rebuilt by
the engine's own ``rsb_tune.results.write_tables`` (a real 100-seed study would take minutes
of this machine's two cores and serve the same files).

Phases, each with the server (``python -m rsb_tune serve``, its own process) on localhost:

- ``baseline``: a real study (``seeds --n N --epochs E``) runs, nobody polls.
- ``closed``: the same study runs while 20 clients poll as fast as they can for 30 s: each
  loops over the 100-trial study's page, its API (summary, trials), and the running study's
  live part and API. Requests/s, p50/p99 latency, errors.
- ``paced``: the same study while 10 clients poll the way open pages do (every POLL_S
  seconds: the running study's live part and its API, and the 100-trial study's API).
- ``baseline`` again: drift of the machine (it is shared) between the phases.

The study's own throughput is the median ``images_per_s`` of its epochs that ended while the
clients ran (the same window after the first result in the baselines); the slowdown is
against the mean of the two baselines. The clients run in this process (their CPU is part of
what the study loses on a small machine).

    python benchmarks/serve.py              # 20 closed-loop clients, 10 paced, 30 s each
    python benchmarks/serve.py --quick      # 10 s windows, a smaller running study
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cli_env, emit_result, print_table, rsb_tune_command, run_cli  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def synthesise(storage: Path, source: Path, name: str, n: int) -> Path:
    """A ``n``-trial seed study made of copies of ``source``'s trials (seeds 0..n-1)."""
    sys.path.insert(0, str(REPO))
    import rsb_tune.study as engine
    from rsb_tune.results import write_tables

    Study = getattr(engine, "StudyDir", None) or engine.Study  # StudyDir once the Python API lands
    src = Study(storage, source.name)
    plan, meta = src.plan(), src.meta()
    rng = random.Random(0)
    dest = Study(storage, name)
    trials = list(plan)
    new_plan = {}
    for i in range(n):
        tid = trials[i % len(trials)]
        new_plan[f"t{i:04d}"] = {**plan[tid], "seed": i, "trial_id": f"t{i:04d}"}
    meta = {k: v for k, v in meta.items() if k not in ("name", "n_trials", "started_at", "ended_at")}
    dest.create(meta, new_plan)
    for i in range(n):
        tid = trials[i % len(trials)]
        shift = rng.gauss(0, 1.5)
        lines = []
        for line in (src.events_dir / f"{tid}.jsonl").read_text().splitlines():
            ev = json.loads(line)
            for k in ("val_top1", "v2_top1"):
                if isinstance(ev.get(k), float):
                    ev[k] += shift
            lines.append(json.dumps(ev))
        (dest.events_dir / f"t{i:04d}.jsonl").write_text("\n".join(lines) + "\n")
        pred = src.predictions_dir / f"{tid}.npz"
        if pred.exists():
            shutil.copy(pred, dest.predictions_dir / f"t{i:04d}.npz")
    write_tables(dest)
    dest.update_meta(ended_at=src.meta().get("ended_at"))
    return dest.dir


class Clients:
    """``n`` threads, each looping over ``urls`` (sleeping ``pace`` s after each round)."""

    def __init__(self, base: str, urls: list[str], n: int, pace: float):
        import httpx

        self.base, self.urls, self.n, self.pace = base, urls, n, pace
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._httpx = httpx

    def _loop(self):
        versions: dict[str, str] = {}
        with self._httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                for url in self.urls:
                    if self._stop.is_set():
                        break
                    target = url + (f"?v={versions[url]}" if url.endswith("/live") and url in versions else "")
                    t0 = time.perf_counter()
                    try:
                        r = client.get(target)
                        ok = r.status_code in (200, 204)
                        if url.endswith("/live") and "X-Version" in r.headers:
                            versions[url] = r.headers["X-Version"]
                        err = None if ok else f"{url}: HTTP {r.status_code}"
                    except Exception as e:  # noqa: BLE001 - every failure is counted
                        err = f"{url}: {type(e).__name__}"
                    dt = time.perf_counter() - t0
                    with self._lock:
                        self.requests += 1
                        self.latencies.append(dt)
                        if err:
                            self.errors.append(err)
                if self.pace:
                    self._stop.wait(self.pace)

    def run(self, seconds: float) -> dict:
        threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        self._stop.wait(seconds)
        self._stop.set()
        for t in threads:
            t.join(60)
        wall = time.perf_counter() - t0
        lat = sorted(self.latencies) or [float("nan")]
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        return {"clients": self.n, "pace_s": self.pace, "seconds": round(wall, 1), "requests": self.requests, "rps": round(self.requests / wall, 1), "p50_ms": round(pct(0.50), 1), "p99_ms": round(pct(0.99), 1), "max_ms": round(lat[-1] * 1000, 1), "errors": len(self.errors), "error_kinds": sorted(set(self.errors))[:5]}


def first_result_time(study_dir: Path, timeout: float = 300) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        times = []
        for p in (study_dir / "events").glob("*.jsonl") if (study_dir / "events").is_dir() else []:
            for line in p.read_text().splitlines():
                if '"type": "result"' in line:
                    times.append(json.loads(line)["time"])
                    break
        if times:
            return min(times)
        time.sleep(0.2)
    raise RuntimeError(f"{study_dir}: no result within {timeout} s")


def epoch_rates(study_dir: Path, t0: float, t1: float) -> list[float]:
    out = []
    for p in (study_dir / "events").glob("*.jsonl"):
        for line in p.read_text().splitlines():
            ev = json.loads(line)
            if ev.get("type") == "result" and t0 <= ev["time"] <= t1 and ev.get("images_per_s"):
                out.append(float(ev["images_per_s"]))
    return out


def phase(storage: Path, label: str, study_args: list[str], window: float, clients=None) -> dict:
    """Run a real study; during ``window`` s after its first result, let ``clients`` poll."""
    name = f"run-{label}"
    result: dict = {}

    def run():
        try:
            result.update(run_cli([*study_args, "--storage", str(storage), "--name", name], sample=False))
        except RuntimeError as e:  # a trial failed (on a shared machine, Ray can be killed under it)
            result.update(wall_s=float("nan"), failed=str(e).splitlines()[0])

    t = threading.Thread(target=run, daemon=True)
    t.start()
    start = first_result_time(storage / name)
    load = clients(name).run(window) if clients else (time.sleep(max(0.0, start + window - time.time())) or None)
    end = start + window
    t.join()
    rates = epoch_rates(storage / name, start, end)
    out = {"phase": label, "study_wall_s": round(result["wall_s"], 1), "epochs_in_window": len(rates), "images_per_s": round(statistics.median(rates), 1) if rates else float("nan"), "load": load, "failed": result.get("failed")}
    print(f"phase {label}: {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--paced-clients", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--workdir", help="keep the studies here (default: a temporary folder)")
    args = ap.parse_args()
    window = 10.0 if args.quick else args.seconds
    running = ["seeds", "--n", "6" if args.quick else "16", "--recipe", "A2", "--epochs", "3" if args.quick else "4", "--quiet"]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rsb-bench-serve-"))
    storage = work / "storage"
    storage.mkdir(parents=True, exist_ok=True)

    from rsb_tune.serve.app import POLL_S

    t0 = time.time()
    run_cli(["seeds", "--n", "2", "--recipe", "A2", "--epochs", "2", "--quiet", "--storage", str(storage), "--name", "src"], sample=False)
    big = synthesise(storage, storage / "src", "big", args.trials)
    made_s = time.time() - t0

    proc = subprocess.Popen([*rsb_tune_command(), "serve", "--storage", str(storage), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(), cwd=str(REPO))
    m = re.search(r"http://([\d.]+):(\d+)/", proc.stdout.readline())
    base = f"http://{m.group(1)}:{m.group(2)}"
    try:
        import httpx

        deadline = time.time() + 300  # the big study's figures drawn once, before any timing
        while httpx.get(f"{base}/api/studies/big", timeout=60).json()["figures"]["status"] != "ready" and time.time() < deadline:
            time.sleep(1)
        closed = lambda name: Clients(base, ["/studies/big", "/api/studies/big", "/api/studies/big/trials", f"/studies/{name}/live", f"/api/studies/{name}"], args.clients, 0.0)  # noqa: E731
        paced = lambda name: Clients(base, [f"/studies/{name}/live", f"/api/studies/{name}", "/api/studies/big"], args.paced_clients, float(POLL_S))  # noqa: E731
        idle = Clients(base, ["/studies/big", "/api/studies/big", "/api/studies/big/trials", "/api/studies/big/epochs", "/"], args.clients, 0.0).run(window)
        print(f"idle: {json.dumps(idle)}", flush=True)
        phases = [phase(storage, "baseline1", running, window), phase(storage, "closed", running, window, closed), phase(storage, "paced", running, window, paced), phase(storage, "baseline2", running, window)]
    finally:
        proc.terminate()
        proc.wait(30)
    base_rate = statistics.fmean([p["images_per_s"] for p in phases if p["phase"].startswith("baseline") and p["images_per_s"] == p["images_per_s"]])
    rows = []
    for p in phases:
        load = p["load"] or {}
        rows.append({"phase": p["phase"], "clients": load.get("clients", 0), "pace s": load.get("pace_s", "-"), "req/s": load.get("rps", "-"), "p50 ms": load.get("p50_ms", "-"), "p99 ms": load.get("p99_ms", "-"), "errors": load.get("errors", "-"), "epochs": p["epochs_in_window"], "img/s": p["images_per_s"], "vs baseline": f"{p['images_per_s'] / base_rate:.3f}", "study wall s": p["study_wall_s"]})
    print(f"served: a {args.trials}-trial seed study synthesised from a real 2-seed study ({made_s:.0f} s to make); window {window:g} s")
    print(f"no study running: {idle['clients']} closed-loop clients over the 100-trial study's pages and API: {idle['rps']} req/s, p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, errors {idle['errors']}")
    print_table(rows)
    emit_result("serve", {"idle": idle, "phases": phases, "baseline_images_per_s": base_rate, "window_s": window, "trials": args.trials})
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    main()
