"""Soak: many one-epoch trials through one driver with actor reuse; does anything grow?

Runs ``rsb-tune seeds --n N --recipe A3 --epochs 1 --storage <tmp> --quiet`` (actors are
reused by default) and, each time another ``--every`` trials have finished (read from the
study's event logs as they are written), samples from /proc:

- the driver's RSS (MB) and open file descriptors;
- the trial actors' (``ray::ImplicitFunc``) RSS and open fds: the largest actor and the sum;
- how many actor processes exist (with reuse it stays at the number of slots).

Then fits a line through the samples after the first (the first ``--every`` trials include
the one-time warm-up; the last sample is taken one trial before the end, while the actors live) and prints the growth per trial: near zero is the target (MB/trial,
fds/trial). Prints a table, then one ``RESULT {json}`` line.

    python benchmarks/soak.py                # 300 trials, a sample every 50 (~30 min on 2 cores)
    python benchmarks/soak.py --n 60 --every 10   # a quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import _Proc, _role, cli_env, emit_result, fit_line, print_table  # noqa: E402

MB = 2**20


def _tree(root: int) -> list[int]:
    kids = _Proc.children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def sample(driver: int) -> dict:
    """Driver and trial actors: RSS (MB) and open fds, now."""
    row: dict = {}
    actors = []
    for pid in _tree(driver):
        read = _Proc.read(pid)
        if read is None:
            continue
        rss, _, cmd, _ = read
        role = _role(cmd, pid == driver)
        if role == "driver":
            row.update(driver_rss_mb=rss / MB, driver_fds=_fds(pid))
        elif role == "trial":
            actors.append((rss / MB, _fds(pid) or 0))
    row.update(
        actors=len(actors),
        actor_rss_mb_max=max((a[0] for a in actors), default=float("nan")),
        actor_rss_mb_sum=sum(a[0] for a in actors),
        actor_fds_max=max((a[1] for a in actors), default=0),
        actor_fds_sum=sum(a[1] for a in actors),
    )
    return row


def finished(study: Path) -> int:
    """Trials whose final result is in their event log."""
    n = 0
    for log in (study / "events").glob("*.jsonl"):
        try:
            if '"status": "ok"' in log.read_text() or '"status": "diverged"' in log.read_text():
                n += 1
        except OSError:
            pass
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="trials (default 300)")
    p.add_argument("--every", type=int, default=50, help="sample after every this many finished trials (default 50)")
    p.add_argument("--recipe", default="A3")
    p.add_argument("--storage", help="where the study goes (default: a temporary directory)")
    args = p.parse_args()

    storage = Path(args.storage or tempfile.mkdtemp(prefix="rsb-soak-"))
    cmd = [sys.executable, "-m", "rsb_tune", "seeds", "--n", str(args.n), "--recipe", args.recipe, "--epochs", "1", "--storage", str(storage), "--name", "soak", "--quiet"]
    study = storage / "soak"
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows: list[dict] = []
    next_at: int | None = args.every

    def threshold(at: int) -> int:  # the last sample a trial early: at the end the actors are shut down
        return min(at, args.n - 1)

    while proc.poll() is None:
        done = finished(study)
        if next_at is not None and done >= threshold(next_at):
            rows.append({"trials_done": done, "elapsed_s": time.time() - t0, **sample(proc.pid)})
            next_at = None if done >= args.n - 1 else (done // args.every + 1) * args.every
        time.sleep(0.5)
    err = proc.stderr.read()
    if proc.returncode != 0:
        sys.exit(f"the study failed (exit {proc.returncode}): {err[-2000:]}")
    print(f"command: {' '.join(cmd)}")
    print_table(rows, title=f"soak: {args.n} one-epoch {args.recipe} trials, one driver, actors reused")
    alive = [r for r in rows if r["actors"]]
    later = alive[1:] if len(alive) >= 3 else alive
    growth = {}
    if len(later) >= 2:
        xs = [r["trials_done"] for r in later]
        for key in ("driver_rss_mb", "driver_fds", "actor_rss_mb_max", "actor_fds_max"):
            growth[f"{key}_per_trial"] = fit_line(xs, [float(r[key]) for r in later])["slope"]
        print_table([growth], title=f"growth per trial (least squares over the samples at {xs[0]}..{xs[-1]} trials)")
    emit_result("soak", {"n": args.n, "every": args.every, "wall_s": time.time() - t0, "samples": rows, "growth": growth})


if __name__ == "__main__":
    main()
