"""rsb-tune's seed study against timm's own ``train.py`` run once per seed, on the same data.

timm's pip package does not ship ``train.py``: pass a pytorch-image-models snapshot
(``--timm-repo``): a checkout, a bare git directory (``train.py`` is read from its ``HEAD``), or
the ``train.py`` file itself. The script copies ``train.py`` alone into a folder outside any
checkout and runs it there, so Python imports the *installed* timm (run from a checkout, the
checkout's own ``timm/`` package would shadow it); it prints the version and file of the timm
that the seed processes import (a probe run the same way: same interpreter, folder and
environment). The newest snapshot's ``train.py`` runs on the installed timm.

What runs, in this order, on the same machine:

1. the digits splits written once as an ImageFolder (``train/``: the 1,078 training images;
   ``validation/``: val and v2 together, the 719 images a trial evaluates each epoch);
2. ``--n`` seeds of timm's ``train.py``, one process per seed, ``--slots`` at a time, each with
   one thread (``OMP_NUM_THREADS=1``), no loader workers, on CPU, with the ingredients of the
   resolved trial config (model and its kwargs, image size, batch, LAMB, lr, weight decay,
   cosine schedule per update with its warm-up, RandAugment, crop scale, flips, mixup/cutmix,
   BCE and its threshold, drop path, eval crop); ``train.py`` has no repeated augmentation
   outside distributed runs, so that one ingredient is off on its side. Twice: **like for
   like** (the precision and memory format the trial takes on this machine: ``--amp
   --amp-dtype bfloat16`` when ``amp: auto`` resolves to bf16, ``--channels-last`` when the
   profile sets it) and **as a user types it** (``train.py``'s defaults: fp32, contiguous);
3. ``rsb-tune seeds --n N`` through the CLI (``_common.run_seed_study``), and the real 100-seed
   study (``--no-study-100`` skips it), whose wall stands beside its projection.

Reported: wall time of each run, the per-seed figure, the 100-seed projection for each side
(timm: mean seconds per process x 100 / slots; rsb-tune: its own wall scaled from N to 100 as
startup + (wall - startup) x 100 / N), and the ratios rsb-tune / timm: like for like and as a
user types it, from the projection and from the real 100-seed wall.

    python benchmarks/timm_train_compare.py --timm-repo ~/src/pytorch-image-models --n 10
    python benchmarks/timm_train_compare.py --timm-repo ... --print-command   # the train.py commands only
    python benchmarks/timm_train_compare.py --timm-repo ... --n 2 --epochs 1 --no-study-100   # a check that it runs
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


def train_py_args(cfg: dict, *, data_dir: Path, out_dir: Path, seed: int, amp: str = "off", channels_last: bool = False) -> list[str]:
    """timm train.py flags for the resolved trial config ``cfg`` (timm 1.0.x flag names), in
    precision ``amp`` (the trial's names: off, bf16, fp16) and with or without channels-last."""
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
    if channels_last:
        args += ["--channels-last"]
    if amp != "off":
        args += ["--amp", "--amp-dtype", {"bf16": "bfloat16", "fp16": "float16"}[amp]]
    if kwargs:
        args += ["--model-kwargs", *kwargs]
    # train.py's --warmup-epochs is an int flag; the digits profile warms up for a fraction of an
    # epoch (0.25 = 4 updates). A -c YAML file sets parser defaults without the flag's type.
    config = out_dir / "warmup.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"warmup_epochs: {cfg['warmup_epochs']}\n")
    return ["-c", str(config), *args]


def _git(repo: Path, *args: str) -> str | None:
    """``git`` on a checkout or a bare git directory; None when it fails."""
    where = ["--git-dir", str(repo)] if (repo / "HEAD").is_file() and (repo / "objects").is_dir() else ["-C", str(repo)]
    try:
        return subprocess.run(["git", *where, *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def copy_train_py(src: Path, folder: Path) -> tuple[Path, str | None]:
    """(``train.py`` copied alone into ``folder``, the snapshot's ``git describe``) from a
    checkout, a bare git directory (its HEAD) or the file itself."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / "train.py"
    if src.is_file():
        dest.write_text(src.read_text())
        return dest, None
    if (src / "train.py").is_file():
        dest.write_text((src / "train.py").read_text())
    else:
        text = _git(src, "show", "HEAD:train.py")
        if text is None:
            raise SystemExit(f"{src}: no train.py (not a pytorch-image-models checkout or git directory)")
        dest.write_text(text)
    return dest, (_git(src, "describe", "--tags", "--always") or "").strip() or None


def timm_env() -> dict[str, str]:
    """train.py's environment: one thread, no GPU, and no PYTHONPATH (only installed packages)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def timm_that_runs(folder: Path) -> dict[str, str]:
    """The version and file of the timm a process started in ``folder`` with train.py's
    interpreter and environment imports."""
    out = subprocess.run([sys.executable, "-c", "import timm; print(timm.__version__); print(timm.__file__)"], cwd=str(folder), env=timm_env(),
                         capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    return {"version": out[0].strip(), "file": out[1].strip()}


def run_timm(train_py: Path, cfg: dict, data_dir: Path, out: Path, seeds: list[int], slots: int, *, amp: str, channels_last: bool) -> dict:
    """One train.py process per seed, ``slots`` at a time; wall of each and of the whole run."""
    env = timm_env()
    out.mkdir(parents=True, exist_ok=True)
    todo, running, walls = list(seeds), {}, {}
    t0 = time.perf_counter()
    while todo or running:
        while todo and len(running) < slots:
            seed = todo.pop(0)
            log = open(out / f"seed{seed}.log", "w")
            cmd = [sys.executable, str(train_py), *train_py_args(cfg, data_dir=data_dir, out_dir=out, seed=seed, amp=amp, channels_last=channels_last)]
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


def _project(per_process: dict, slots: int) -> float:
    """100 seeds of train.py, ``slots`` at a time, at the mean seconds per process."""
    return sum(per_process.values()) / len(per_process) * 100 / slots


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timm-repo", type=Path, required=True, help="a pytorch-image-models checkout, bare git directory, or its train.py")
    p.add_argument("--n", type=int, default=10, help="seeds on each side (default 10)")
    p.add_argument("--slots", type=int, default=2, help="train.py processes at once (default 2: rsb-tune's trials at once on 2 cores)")
    p.add_argument("--recipe", default="A2")
    p.add_argument("--epochs", type=int, help="epochs on every side (default: the recipe's; fewer only to check the script)")
    p.add_argument("--no-study-100", action="store_true", help="skip the real 100-seed study (the projection only)")
    p.add_argument("--print-command", action="store_true", help="print seed 0's train.py commands and exit")
    args = p.parse_args(argv)

    import yaml

    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.config import Layer, resolve
    from rsb_tune.planning.recipes import get_recipe
    from rsb_tune.training.trial import TrialRuntime

    layers = [Layer("benchmark", {"epochs": args.epochs})] if args.epochs else []
    cfg = dict(resolve(get_recipe(args.recipe), get_dataset("digits").profile, layers).values)
    rt = TrialRuntime({**cfg, "device": "cpu"})  # what the trial takes on this machine
    arms = {
        "like for like": {"amp": rt.amp, "channels_last": rt.channels_last},
        "as a user types it": {"amp": "off", "channels_last": False},  # train.py's defaults
    }
    tmp = Path(tempfile.mkdtemp(prefix="rsb-timm-compare-"))
    train_py, tag = copy_train_py(args.timm_repo, tmp / "train_py")
    if args.print_command:
        for arm, how in arms.items():
            print(f"# {arm}\n" + " ".join([sys.executable, str(train_py), *train_py_args(cfg, data_dir=tmp / "data", out_dir=tmp / "out", seed=0, **how)]))
        print(f"({tmp / 'out' / 'warmup.yaml'}: warmup_epochs: {cfg['warmup_epochs']})")
        return 0
    ran = timm_that_runs(train_py.parent)
    print(f"timm train.py from {args.timm_repo} ({tag or 'no git tag'}), copied alone to {train_py.parent}; it imports timm {ran['version']} from {ran['file']}")
    print(f"the trial on this machine: amp {rt.amp}, channels_last {rt.channels_last}")
    counts = write_image_folder(tmp / "data")
    seeds = list(range(args.n))
    timm_runs = {arm: run_timm(train_py, cfg, tmp / "data", tmp / f"out{i}", seeds, args.slots, **how) for i, (arm, how) in enumerate(arms.items())}
    study = run_seed_study(n=args.n, recipe=args.recipe, epochs=args.epochs, tag="rsb-tune")
    startup = study["startup_s"] or 0.0
    rsb_100 = startup + (study["wall_s"] - startup) * 100 / args.n
    real_100 = study["wall_s"] if args.n >= 100 else None
    if real_100 is None and not args.no_study_100:
        real_100 = run_seed_study(n=100, recipe=args.recipe, epochs=args.epochs, tag="rsb-tune-100", trace=False)["wall_s"]
    rows = []
    for arm, run in timm_runs.items():
        per = sorted(run["per_process_s"].values())
        how = arms[arm]
        rows.append({"side": f"timm train.py, {arm}", "precision": "fp32" if how["amp"] == "off" else how["amp"], "channels_last": how["channels_last"],
                     "seeds": args.n, "wall_s": round(run["wall_s"], 1), "per_seed_s": round(per[len(per) // 2], 2),
                     "projected_100_s": round(_project(run["per_process_s"], args.slots), 1), "real_100_s": "-"})  # fmt: skip
    rows.append({"side": "rsb-tune seeds", "precision": "fp32" if rt.amp == "off" else rt.amp, "channels_last": rt.channels_last, "seeds": args.n,
                 "wall_s": round(study["wall_s"], 1), "per_seed_s": round(study["trial_compute_s_median"] or float("nan"), 2),
                 "projected_100_s": round(rsb_100, 1), "real_100_s": round(real_100, 1) if real_100 else "-"})  # fmt: skip
    print_table(rows, title=f"{args.recipe} on digits ({counts['train']} train / {counts['validation']} evaluated images), {args.slots} at a time")
    ratios = {}
    for arm, run in timm_runs.items():
        timm_100 = _project(run["per_process_s"], args.slots)
        ratios[arm] = {"projected": rsb_100 / timm_100, "real_100": real_100 / timm_100 if real_100 else None}
        real = f", the real 100-seed study {ratios[arm]['real_100']:.3f}" if real_100 else ""
        print(f"rsb-tune / timm train.py {arm}: projected to 100 seeds {ratios[arm]['projected']:.3f}{real}")
    print("resolved trial config:", yaml.safe_dump({k: cfg[k] for k in sorted(cfg) if not k.endswith("_source")}, default_flow_style=True, width=1 << 20).strip())
    emit_result("timm_train_compare", {"rows": rows, "ratios": ratios, "timm_snapshot": tag, "timm_ran": ran, "trial_amp": rt.amp,
                                       "trial_channels_last": rt.channels_last, "timm_runs": timm_runs, "study": study, "real_100_s": real_100})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
