"""Load on ``rsb-tune serve``, and what it costs a study that runs meanwhile.

The served study is a 100-trial seed study *synthesised* from a real one: a small real study
is run first (``seeds --n 2 --epochs 2``) and its plan, event logs and predictions are copied
100 times with the seed changed and the accuracies jittered, then the tables are rebuilt by
the engine's own ``rsb_tune.store.tables.write_tables`` (a real 100-seed study would take minutes
of this machine's two cores and serve the same files).

The server (``python -m rsb_tune serve``, its own process) runs on localhost.

- ``idle``: no study running, 20 clients poll as fast as they can for 30 s, each looping over
  the 100-trial study's page, its API (summary, trials, epochs) and the index: requests/s,
  p50/p99 latency, errors.
- ``interleaved``: one real study (``seeds --n 16 --epochs 6``) runs; from its first result
  on, 30-s slots cycle through no clients, 10 *paced* clients (each polls the way an open
  page does, every POLL_S seconds: the running study's live part and API, and the 100-trial
  study's API), no clients, and 20 *closed-loop* clients (the 100-trial study's page and
  API, the running study's live part and API, as fast as they can). An epoch counts for the
  slot that holds it whole; the study's throughput under a load is the median images/s of
  its epochs there, against the slots without clients between them. Interleaving inside
  one run keeps the drift of a shared machine (other people's jobs) out of the ratio.

The clients run in this process: their CPU is part of what the study loses on a small machine.
Each load also reports the CPU milliseconds per request of the server process
(``server_cpu_ms``), of its figure worker (``worker_cpu_ms``, the drawing child process) and
of the clients' threads here (``client_cpu_ms``), and the machine's busy cores meanwhile
(``machine_busy``: other people's jobs included).

    python benchmarks/serve.py              # 20 closed-loop clients, 10 paced; 30 s idle, 30-s slots
    python benchmarks/serve.py --quick      # a 10-s idle window, a smaller running study
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
from _common import _Proc, cli_env, emit_result, print_table, rsb_tune_command, run_cli  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def synthesise(storage: Path, source: Path, name: str, n: int) -> Path:
    """A ``n``-trial seed study made of copies of ``source``'s trials (seeds 0..n-1)."""
    sys.path.insert(0, str(REPO))
    import rsb_tune.store.directory as engine
    from rsb_tune.store.tables import write_tables

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

    def __init__(self, base: str, urls: list[str], n: int, pace: float, server_pid: int | None = None):
        import httpx

        self.base, self.urls, self.n, self.pace, self.server_pid = base, urls, n, pace, server_pid
        self.cpu = {"server": 0.0, "worker": 0.0, "client": 0.0, "busy": 0.0}
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
        cpu0 = self._cpu()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        self._stop.wait(seconds)
        self._stop.set()
        for t in threads:
            t.join(60)
        self.wall = time.perf_counter() - t0
        self.cpu = {k: v - cpu0[k] for k, v in self._cpu().items()}
        return summarise([self])

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far of the server process, its children (the figure worker), this
        process (the clients) and the whole machine."""
        server = _Proc.read(self.server_pid) if self.server_pid else None
        kids = _Proc.children_map().get(self.server_pid, []) if self.server_pid else []
        worker = sum(got[1] for got in map(_Proc.read, kids) if got)
        return {"server": server[1] if server else 0.0, "worker": worker, "client": time.process_time(), "busy": _Proc.busy_seconds()}


def summarise(runs: list[Clients]) -> dict:
    """Requests/s, p50/p99/max latency and errors over one or several runs of clients."""
    lat = sorted(x for r in runs for x in r.latencies) or [float("nan")]
    wall = sum(r.wall for r in runs)
    requests = sum(r.requests for r in runs)
    errors = [e for r in runs for e in r.errors]
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    per_req = lambda k: round(1000 * sum(r.cpu[k] for r in runs) / max(1, requests), 2)  # noqa: E731
    cpu = {f"{k}_cpu_ms": per_req(k) for k in ("server", "worker", "client")}
    cpu["machine_busy"] = round(sum(r.cpu["busy"] for r in runs) / wall, 2)  # cores busy, on average
    return {"clients": runs[0].n, "pace_s": runs[0].pace, "seconds": round(wall, 1), "requests": requests, "rps": round(requests / wall, 1), "p50_ms": round(pct(0.50), 1), "p99_ms": round(pct(0.99), 1), "max_ms": round(lat[-1] * 1000, 1), "errors": len(errors), "error_kinds": sorted(set(errors))[:5], **cpu}


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


def epoch_rates(study_dir: Path) -> list[tuple[float, float, float]]:
    """(start, end, images_per_s) of every epoch of the study."""
    out = []
    for p in (study_dir / "events").glob("*.jsonl"):
        for line in p.read_text().splitlines():
            ev = json.loads(line)
            if ev.get("type") == "result" and ev.get("images_per_s") and ev.get("epoch_time_s"):
                out.append((ev["time"] - ev["epoch_time_s"], ev["time"], float(ev["images_per_s"])))
    return out


def interleaved(storage: Path, study_args: list[str], slot_s: float, loads: dict) -> dict:
    """One real study; from its first result on, slots of ``slot_s`` seconds cycle through
    no clients and each load of ``loads`` until it ends. An epoch counts for the slot that
    holds it whole; the study's throughput under a load is the median images/s of its epochs,
    against the slots without clients around them (a shared machine drifts over minutes)."""
    name = "run-interleaved"
    result: dict = {}

    def run():
        try:
            result.update(run_cli([*study_args, "--storage", str(storage), "--name", name], sample=False))
        except RuntimeError as e:  # a trial failed (on a shared machine, Ray can be killed under it)
            result.update(wall_s=float("nan"), failed=str(e).splitlines()[0])

    t = threading.Thread(target=run, daemon=True)
    t.start()
    first_result_time(storage / name, timeout=900)
    cycle = [c for load in loads for c in ("none", load)]
    slots, runs = [], {load: [] for load in loads}
    while t.is_alive():
        cond = cycle[len(slots) % len(cycle)]
        t0 = time.time()
        if cond == "none":
            t.join(slot_s)
        else:
            runs[cond].append(loads[cond](name))
            runs[cond][-1].run(slot_s)
        slots.append((cond, t0, time.time()))
    epochs = epoch_rates(storage / name)
    rates: dict[str, list[float]] = {c: [] for c in ("none", *loads)}
    for start, end, rate in epochs:
        for cond, a, b in slots:
            if a <= start and end <= b:
                rates[cond].append(rate)
    base = statistics.median(rates["none"]) if rates["none"] else float("nan")
    out = {"study_wall_s": round(result.get("wall_s", float("nan")), 1), "failed": result.get("failed"), "slots": len(slots), "epochs": len(epochs), "none": {"epochs": len(rates["none"]), "images_per_s": round(base, 1)}}
    for load in loads:
        med = statistics.median(rates[load]) if rates[load] else float("nan")
        out[load] = {"epochs": len(rates[load]), "images_per_s": round(med, 1), "vs_none": round(med / base, 3), **(summarise(runs[load]) if runs[load] else {})}
    return out


def start_server(storage: Path, stack: str) -> tuple[subprocess.Popen, str]:
    """``rsb-tune serve`` over ``storage`` in its own process, on a free port, once the big
    study's figures are drawn (before any timing). ``stack``: "auto" is the command itself
    (httptools and uvloop where installed); "h11" runs the same :func:`rsb_tune.serve.serve`
    on uvicorn's pure-Python HTTP stack and asyncio loop."""
    if stack == "auto":
        cmd = [*rsb_tune_command(), "serve", "--storage", str(storage), "--port", "0"]
    else:
        code = "import sys; from rsb_tune.serve import serve; serve(sys.argv[1], port=0, http='h11', loop='asyncio')"
        cmd = [sys.executable, "-c", code, str(storage)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(), cwd=str(REPO))
    m = re.search(r"http://([\d.]+):(\d+)/", proc.stdout.readline())
    base = f"http://{m.group(1)}:{m.group(2)}"
    import httpx

    deadline = time.time() + 300
    while httpx.get(f"{base}/api/studies/big", timeout=60).json()["figures"]["status"] != "ready" and time.time() < deadline:
        time.sleep(1)
    return proc, base


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--paced-clients", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--slot", type=float, default=30.0, help="seconds per slot of the interleaved study")
    ap.add_argument("--workdir", help="keep the studies here (default: a temporary folder)")
    ap.add_argument("--compare-stacks", action="store_true", help="first, idle windows alternating uvicorn's pure-Python stack (h11 + asyncio) and the default")
    args = ap.parse_args()
    window = 10.0 if args.quick else args.seconds
    running = ["seeds", "--n", "6" if args.quick else "16", "--recipe", "A2", "--epochs", "3" if args.quick else "6", "--quiet"]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rsb-bench-serve-"))
    storage = work / "storage"
    storage.mkdir(parents=True, exist_ok=True)

    from rsb_tune.serve.app import POLL_S

    t0 = time.time()
    run_cli(["seeds", "--n", "2", "--recipe", "A2", "--epochs", "2", "--quiet", "--storage", str(storage), "--name", "src"], sample=False)
    big = synthesise(storage, storage / "src", "big", args.trials)
    made_s = time.time() - t0

    idle_urls = ["/studies/big", "/api/studies/big", "/api/studies/big/trials", "/api/studies/big/epochs", "/"]
    stacks, stack_rows = {}, []
    if args.compare_stacks:  # idle windows alternating the pure-Python stack and the default one, one server each
        for rep in range(2):
            for stack in ("h11", "auto"):
                proc, base = start_server(storage, stack)
                try:
                    r = Clients(base, idle_urls, args.clients, 0.0, proc.pid).run(window)
                finally:
                    stop_server(proc)
                stacks.setdefault(stack, []).append(r)
                stack_rows.append({"stack": stack, "round": rep + 1, "req/s": r["rps"], "p50 ms": r["p50_ms"], "p99 ms": r["p99_ms"], "errors": r["errors"], "server ms/req": r["server_cpu_ms"]})
                print(f"idle, {stack} stack, round {rep + 1}: {json.dumps(r)}", flush=True)
    proc, base = start_server(storage, "auto")
    try:
        closed = lambda name: Clients(base, ["/studies/big", "/api/studies/big", "/api/studies/big/trials", f"/studies/{name}/live", f"/api/studies/{name}"], args.clients, 0.0, proc.pid)  # noqa: E731
        paced = lambda name: Clients(base, [f"/studies/{name}/live", f"/api/studies/{name}", "/api/studies/big"], args.paced_clients, float(POLL_S), proc.pid)  # noqa: E731
        idle = Clients(base, idle_urls, args.clients, 0.0, proc.pid).run(window)
        print(f"idle: {json.dumps(idle)}", flush=True)
        study = interleaved(storage, running, args.slot, {"paced": paced, "closed": closed})
        print(f"interleaved: {json.dumps(study)}", flush=True)
    finally:
        stop_server(proc)
    if stack_rows:
        print_table(stack_rows, title=f"idle, {args.clients} closed-loop clients: uvicorn's pure-Python stack (h11 + asyncio) against the default (httptools + uvloop when installed)")
    print(f"served: a {args.trials}-trial seed study synthesised from a real 2-seed study ({made_s:.0f} s to make)")
    print(f"no study running: {idle['clients']} closed-loop clients for {window:g} s over the {args.trials}-trial study's page and API: {idle['rps']} req/s, p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, max {idle['max_ms']} ms, errors {idle['errors']}; CPU per request: server {idle['server_cpu_ms']} ms, clients {idle['client_cpu_ms']} ms; {idle['machine_busy']} cores busy")
    print(f"while a study runs ({' '.join(running)}; {study['slots']} slots of {args.slot:g} s cycling none / paced / none / closed; {study['epochs']} epochs):")
    rows = [{"clients": "none", "req/s": "-", "p50 ms": "-", "p99 ms": "-", "errors": "-", "server ms/req": "-", "worker ms/req": "-", "client ms/req": "-", "epochs": study["none"]["epochs"], "img/s": study["none"]["images_per_s"], "vs none": "1"}]
    for load, label in (("paced", f"{args.paced_clients} paced ({POLL_S} s)"), ("closed", f"{args.clients} closed-loop")):
        r = study[load]
        rows.append({"clients": label, "req/s": r.get("rps", "-"), "p50 ms": r.get("p50_ms", "-"), "p99 ms": r.get("p99_ms", "-"), "errors": r.get("errors", "-"), "server ms/req": r.get("server_cpu_ms", "-"), "worker ms/req": r.get("worker_cpu_ms", "-"), "client ms/req": r.get("client_cpu_ms", "-"), "epochs": r["epochs"], "img/s": r["images_per_s"], "vs none": r["vs_none"]})
    print_table(rows)
    emit_result("serve", {"idle": idle, "interleaved": study, "window_s": window, "slot_s": args.slot, "trials": args.trials, "running": running, "stacks": stacks})
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    main()
