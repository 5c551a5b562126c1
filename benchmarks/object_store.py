"""What a study in an object store costs against the same study in a local directory.

Runs the same seed study twice through the real CLI, ``--storage <tmp dir>`` and then
``--storage s3://...`` (by default moto's S3 server on localhost, so the figure is the
mirror's own overhead, not a network's; pass ``--storage-uri`` for a real bucket), and
prints for each the wall time, the efficiency (wall / (compute / slots), see
study_overhead.py) and the per-epoch overhead, then:

- ``wall_ratio`` = s3 wall / local wall (1.0: the object store costs nothing);
- ``cold_status_s``: ``rsb-tune status`` on a machine that has never seen the study (it
  downloads the study, all but the checkpoints, from the store);
- ``same_results``: the two studies' final val_top1 are equal trial by trial (CPU runs are
  deterministic, so the storage must not change a single number).

    python benchmarks/object_store.py              # 10 seeds of A2 (15 epochs)
    python benchmarks/object_store.py --quick      # 4 seeds x 3 epochs
    AWS_PROFILE=... python benchmarks/object_store.py --storage-uri s3://BUCKET/PREFIX
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, cli_env, emit_result, print_table, rsb_tune_command, run_seed_study  # noqa: E402

COLUMNS = ["run", "storage", "wall_s", "compute_s", "efficiency", "startup_s", "per_epoch_overhead_s", "tail_s", "foreign_cpu_s"]


def _moto_uri() -> tuple[str, object]:
    """A local S3 server (moto) with a bucket; returns (uri, server)."""
    import logging

    import pyarrow.fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    query = f"endpoint_override=http://{host}:{port}&region=us-east-1"
    fs, _ = pyarrow.fs.FileSystem.from_uri(f"s3://bench/x?{query}&allow_bucket_creation=true")
    fs.create_dir("bench")
    return f"s3://bench/{{prefix}}?{query}", server


def _with_prefix(uri: str, prefix: str) -> str:
    if "{prefix}" in uri:
        return uri.format(prefix=prefix)
    base, _, query = uri.partition("?")
    return f"{base.rstrip('/')}/{prefix}" + (f"?{query}" if query else "")


def _final_val(study_dir: Path) -> dict:
    import pandas as pd

    trials = pd.read_parquet(study_dir / "trials.parquet")
    return dict(zip(trials.trial_id, trials.val_top1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10, help="seeds (default 10)")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the profile)")
    p.add_argument("--recipe", default="A2")
    p.add_argument("--quick", action="store_true", help="4 seeds x 3 epochs")
    p.add_argument("--storage-uri", help="an object-store prefix to use instead of a local moto server")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to the CLI (e.g. checkpoint_every=5)")
    args = p.parse_args(argv)
    n, epochs = (4, 3) if args.quick else (args.n, args.epochs)
    server = None
    uri = args.storage_uri
    if uri is None:
        uri, server = _moto_uri()
    uri = _with_prefix(uri, f"rsb-bench-{uuid.uuid4().hex[:8]}")
    local = remote = None
    try:
        common = dict(n=n, recipe=args.recipe, epochs=epochs, sets=args.set, keep=True, trace=False)
        local = run_seed_study(tag="local", **common)
        remote = run_seed_study(tag="s3", storage_uri=uri, **common)
        local["storage"], remote["storage"] = "directory", uri.split("?")[0]
        for row in (local, remote):  # CPU used outside the study: with a local S3 server, mostly that server
            row["foreign_cpu_s"] = row["tree"].get("foreign_cpu_s")
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.time()
            proc = subprocess.run(
                [*rsb_tune_command(), "status", "bench", "--storage", uri], env=cli_env({"RSB_TUNE_CACHE_DIR": cache}), cwd=str(REPO), capture_output=True, text=True
            )
            cold_status_s = time.time() - t0
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            same = _final_val(Path(local["study_dir"])) == _final_val(Path(cache, "mirror").glob("*/bench").__next__())
    finally:
        if server is not None:
            server.stop()
        for row in (local, remote):
            if row:
                shutil.rmtree(row["tmp_dir"], ignore_errors=True)
    print_table([local, remote], COLUMNS, title=f"the same seed study ({n} x {args.recipe}) in a directory and in an object store")
    summary = {"wall_ratio": remote["wall_s"] / local["wall_s"], "cold_status_s": cold_status_s, "same_results": same}
    print_table([summary], title="object store vs directory")
    emit_result("object_store", {"runs": [local, remote], **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
