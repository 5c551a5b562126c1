"""rsb-tune's seed study against timm's own ``train.py`` run once per seed, on the same data.

timm's pip package does not ship ``train.py``: pass a checkout of pytorch-image-models
(``--timm-repo``), ideally at the installed timm's version tag (``git checkout v$(python -c
'import timm; print(timm.__version__)')``); the script says which tag it found.

What runs, in this order, on the same machine:

1. the digits splits written once as an ImageFolder (``train/``: the 1,078 training images;
   ``validation/``: val and v2 together, the 719 images a trial evaluates each epoch);
2. ``--n`` seeds of timm's ``train.py``, one process per seed, ``--slots`` at a time, each with
   one thread (``OMP_NUM_THREADS=1``), no loader workers, on CPU, with the ingredients of the
   resolved trial config (model and its kwargs, image size, batch, LAMB, lr, weight decay,
   cosine schedule per update with its warm-up, RandAugment, crop scale, flips, mixup/cutmix,
   BCE and its threshold, drop path, eval crop); ``train.py`` has no repeated augmentation
   outside distributed runs, so that one ingredient is off on its side;
3. ``rsb-tune seeds --n N`` through the CLI (``_common.run_seed_study``).

Reported: wall time of each side, the per-seed figure, the 100-seed projection for each side
(timm: seconds per process x 100 / slots; rsb-tune: its own wall scaled from N to 100 by the
fixed start-up plus per-seed slope measured in ``scaling.py``'s way, here simply
startup + (wall - startup) x 100 / N), and the ratio rsb-tune / timm.

    python benchmarks/timm_train_compare.py --timm-repo ~/src/pytorch-image-models --n 10
    python benchmarks/timm_train_compare.py --timm-repo ... --print-command   # the train.py command only
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's rsb_tune

from _common import emit_result, print_table, run_seed_study  # noqa: E402


def write_image_folder(root: Path) -> dict[str, int]:
    """The digits splits as PNG class folders: train/ and validation/ (val + v2)."""
    from PIL import Image

    from rsb_tune.data.registry import load_splits

    data = load_splits("digits")
    counts = {}
    for name, splits in (("train", [data.train]), ("validation", [data.val, data.v2])):
        n = 0
        for split in splits:
            for img, label in zip(split.images, split.labels):
                d = root / name / data.classes[int(label)]
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(d / f"{n:05d}.png")
                n += 1
        counts[name] = n
    return counts


def train_py_args(cfg: dict, *, data_dir: Path, out_dir: Path, seed: int) -> list[str]:
    """timm train.py flags for the resolved trial config ``cfg`` (timm 1.0.x flag names)."""
    kwargs = [f"{k}={v!r}".replace(" ", "") for k, v in (cfg["model_kwargs"] or {}).items()]
    args = [
        "--data-dir", str(data_dir), "--train-split", "train", "--val-split", "validation",
        "--model", cfg["model"], "--num-classes", "10", "--input-size", "3", str(cfg["img_size"]), str(cfg["img_size"]),
        "--crop-pct", str(cfg["crop_pct"]), "--interpolation", cfg["interpolation"], "--train-interpolation", cfg["interpolation"],
        "-b", str(cfg["batch_size"]), "-vb", str(cfg["eval_batch_size"]),
        "--opt", cfg["opt"], "--lr", str(cfg["lr_resolved"]), "--weight-decay", str(cfg["weight_decay"]),
        "--sched", cfg["sched"], "--sched-on-updates", "--epochs", str(cfg["epochs"]),
        "--warmup-lr", str(cfg["warmup_lr"]), "--min-lr", str(cfg["min_lr"]), "--cooldown-epochs", "0",
        "--scale", str(cfg["scale_min"]), "1.0", "--hflip", str(cfg["hflip"]), "--color-jitter", str(cfg["color_jitter"] or 0.0),
        "--reprob", str(cfg["re_prob"]), "--mixup", str(cfg["mixup_alpha"]), "--cutmix", str(cfg["cutmix_alpha"]),
        "--mixup-prob", str(cfg["mixup_prob"]), "--mixup-switch-prob", str(cfg["mixup_switch_prob"]), "--smoothing", str(cfg["smoothing"]),
        "--drop-path", str(cfg["drop_path"]), "--seed", str(seed), "--workers", "0", "--no-prefetcher", "--device", "cpu",
        "--output", str(out_dir), "--experiment", f"seed{seed}", "--log-interval", "1000", "--checkpoint-hist", "1",
    ]  # fmt: skip
    if cfg["auto_augment"]:
        args += ["--aa", cfg["auto_augment"]]
    if cfg["loss"] == "bce":
        args += ["--bce-loss"] + (["--bce-target-thresh", str(cfg["bce_target_thresh"])] if cfg["bce_target_thresh"] is not None else [])
    if cfg["channels_last"] == "on":
        args += ["--channels-last"]
    if kwargs:
        args += ["--model-kwargs", *kwargs]
    # train.py's --warmup-epochs is an int flag; the digits profile warms up for a fraction of an
    # epoch (0.25 = 4 updates). A -c YAML file sets parser defaults without the flag's type.
    config = out_dir / "warmup.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"warmup_epochs: {cfg['warmup_epochs']}\n")
    return ["-c", str(config), *args]


def _timm_tag(repo: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(repo), "describe", "--tags"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_timm(train_py: Path, cfg: dict, data_dir: Path, out: Path, seeds: list[int], slots: int) -> dict:
    """One train.py process per seed, ``slots`` at a time; wall of each and of the whole run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    todo, running, walls = list(seeds), {}, {}
    t0 = time.perf_counter()
    while todo or running:
        while todo and len(running) < slots:
            seed = todo.pop(0)
            log = open(out / f"seed{seed}.log", "w")
            cmd = [sys.executable, str(train_py), *train_py_args(cfg, data_dir=data_dir, out_dir=out, seed=seed)]
            running[seed] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(train_py.parent)), time.perf_counter(), log)
        for seed, (proc, start, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                if proc.returncode != 0:
                    raise RuntimeError(f"train.py seed {seed} exited {proc.returncode}; see {out / f'seed{seed}.log'}")
                walls[seed] = time.perf_counter() - start
                del running[seed]
        time.sleep(0.1)
    return {"wall_s": time.perf_counter() - t0, "per_process_s": walls}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timm-repo", type=Path, required=True, help="a pytorch-image-models checkout (its train.py)")
    p.add_argument("--n", type=int, default=10, help="seeds on each side (default 10)")
    p.add_argument("--slots", type=int, default=2, help="train.py processes at once (default 2: rsb-tune's trials at once on 2 cores)")
    p.add_argument("--recipe", default="A2")
    p.add_argument("--print-command", action="store_true", help="print seed 0's train.py command and exit")
    args = p.parse_args(argv)

    import timm
    import yaml

    from rsb_tune.planning.config import resolve
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.recipes import get_recipe

    train_py = args.timm_repo / "train.py"
    cfg = dict(resolve(get_recipe(args.recipe), get_dataset("digits").profile, []).values)
    tmp = Path(tempfile.mkdtemp(prefix="rsb-timm-compare-"))
    if args.print_command:
        print(" ".join([sys.executable, str(train_py), *train_py_args(cfg, data_dir=tmp / "data", out_dir=tmp / "out", seed=0)]))
        print(f"({tmp / 'out' / 'warmup.yaml'}: warmup_epochs: {cfg['warmup_epochs']})")
        return 0
    if not train_py.is_file():
        p.error(f"{train_py}: not found (clone https://github.com/huggingface/pytorch-image-models and check out v{timm.__version__})")
    tag = _timm_tag(args.timm_repo)
    if tag and tag.lstrip("v") != timm.__version__:
        print(f"warning: the checkout is at {tag}, the installed timm is {timm.__version__}", file=sys.stderr)
    counts = write_image_folder(tmp / "data")
    (tmp / "out").mkdir(exist_ok=True)
    seeds = list(range(args.n))
    timm_run = run_timm(train_py, cfg, tmp / "data", tmp / "out", seeds, args.slots)
    study = run_seed_study(n=args.n, recipe=args.recipe, tag="rsb-tune")
    per_proc = sorted(timm_run["per_process_s"].values())
    timm_100 = sum(per_proc) / len(per_proc) * 100 / args.slots
    startup = study["startup_s"] or 0.0
    rsb_100 = startup + (study["wall_s"] - startup) * 100 / args.n
    rows = [
        {"side": f"timm train.py ({tag or 'untagged checkout'})", "seeds": args.n, "wall_s": round(timm_run["wall_s"], 1),
         "per_seed_s": round(per_proc[len(per_proc) // 2], 2), "projected_100_s": round(timm_100, 1)},
        {"side": "rsb-tune seeds", "seeds": args.n, "wall_s": round(study["wall_s"], 1),
         "per_seed_s": round(study["trial_compute_s_median"] or float("nan"), 2), "projected_100_s": round(rsb_100, 1)},
    ]  # fmt: skip
    print_table(rows, title=f"{args.recipe} on digits ({counts['train']} train / {counts['validation']} evaluated images), {args.slots} at a time")
    print(f"\nrsb-tune / timm train.py, projected to 100 seeds: {rsb_100 / timm_100:.3f}")
    print("resolved trial config:", yaml.safe_dump({k: cfg[k] for k in sorted(cfg) if not k.endswith("_source")}, default_flow_style=True, width=1 << 20).strip())
    emit_result("timm_train_compare", {"rows": rows, "ratio_100": rsb_100 / timm_100, "timm_tag": tag, "timm_run": timm_run, "study": study})
    return 0


if __name__ == "__main__":
    sys.exit(main())
