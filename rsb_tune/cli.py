"""The ``rsb-tune`` command line.

Run-level options and a generic ``--set key=value`` live here; hyperparameters live in the
recipe and the space file. Heavy imports (torch, timm, ray) happen inside the commands that
need them, so ``rsb-tune --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from rsb_tune.errors import ConfigError, StoreUnreachable, StudyError, UserError

__all__ = ["main", "build_parser"]

DEFAULT_STORAGE = "./rsb-results"
_STORAGE_HELP = (
    f"where studies live: a directory, shared by every node on a cluster (default {DEFAULT_STORAGE}), "
    "or an object store: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX"
)

_EPILOG = """\
examples:
  rsb-tune seeds --n 100 --recipe A2          the paper's seed study on the embedded digits
  rsb-tune grid --space search_spaces/lamb_bce.yaml
  rsb-tune seeds --n 5 --recipe A3 --data ~/imagenette --set drop_path=0.05
  rsb-tune status NAME ; rsb-tune resume NAME ; rsb-tune report NAME
  rsb-tune recipes show A2 ; rsb-tune keys

precedence of config values: recipe < dataset profile < space file < --model/--epochs/... < --set
"""


def _add_study_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("study")
    g.add_argument("--name", help="study name (default: kind, recipe or space, and the time)")
    g.add_argument("--storage", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    g.add_argument("--dry-run", action="store_true", help="print how many trials would run and each resolved config, then exit")
    c = p.add_argument_group("run-level config (shorthands for --set)")
    c.add_argument("--data", metavar="PATH", help="ImageFolder root with train/, val/ and optional v2/ (default: the embedded digits)")
    c.add_argument("--model", help="timm model name (default: the dataset profile's)")
    c.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the dataset profile)")
    c.add_argument("--batch-size", type=int, help="global batch size (the lr is rescaled to it)")
    c.add_argument("--workers-per-trial", type=int, help="data-parallel (DDP) workers per trial through Ray Train, each with --cpus/--gpus-per-trial; the global batch is kept (default 1)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key (repeatable; see `rsb-tune keys`)")
    _add_run_options(p)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("execution")
    r.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial; also torch threads per trial (default 1)")
    r.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial; fractions pack trials on a GPU (default 0)")
    r.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: as resources allow)")
    r.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial from its last checkpoint (default 2)")
    r.add_argument("--address", help="existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a local one)")
    r.add_argument("--tracking", action="append", default=[], choices=["tensorboard", "mlflow", "wandb"], help="also log to TensorBoard, MLflow (<study>/mlflow.db) or W&B (repeatable; each needs its extra)")
    r.add_argument("--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsb-tune",
        description="ResNet-strikes-back style hyperparameter grids and seed studies (timm + Ray Tune).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("seeds", help="one recipe under many seeds", description="Run a recipe under seeds S..S+N-1 (the paper's 100-seed study of A2).")
    p.add_argument("--n", type=int, required=True, help="number of seeds")
    p.add_argument("--recipe", default="A2", help="recipe name: A1, A2 or A3 (default A2)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    _add_study_options(p)

    p = sub.add_parser("grid", help="a coarse grid from a space file", description="Run the grid of a space file (see search_spaces/) under each of its seeds.")
    p.add_argument("--space", required=True, help="search-space YAML file")
    _add_study_options(p)

    p = sub.add_parser("resume", help="continue a study whose driver stopped", description="Continue a study: finished trials are kept, unfinished ones continue from their last checkpoint.")
    p.add_argument("name")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    _add_run_options(p)

    p = sub.add_parser("status", help="where a study stands", description="Trials done / running / failed and the best and mean results so far.")
    p.add_argument("name")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=_STORAGE_HELP)

    p = sub.add_parser("report", help="figures and statistics of a study", description="Write figures (PNG, SVG), summary.json, summary.md and index.html.")
    p.add_argument("name")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--out", help="output directory (default <study>/report)")

    p = sub.add_parser("compare", help="compare two studies", description="Is recipe A really better than recipe B? Writes a comparison report.")
    p.add_argument("name_a")
    p.add_argument("name_b")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--out", help="output directory (default <storage>/compare-A-vs-B)")

    p = sub.add_parser("recipes", help="list the recipes, or show one as YAML", description="List recipes A1/A2/A3, or print one as YAML.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("recipe", nargs="?")

    sub.add_parser("keys", help="list every config key with its type and help")

    from rsb_tune.serve import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV  # no web stack imported here

    p = sub.add_parser("serve", help="browse every study of a storage in a web browser", description="A read-only study browser: every study of the storage, live while they run (figures, trials, comparisons, a JSON API).")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only; any other needs a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--token", help=f"token that every request must present (default ${TOKEN_ENV}); required for a non-local --host")
    return parser


# --------------------------------------------------------------------------- commands


def _cmd_recipes(args) -> int:
    from rsb_tune.recipes import RECIPES, get_recipe

    if args.action == "list" or not args.recipe:
        if args.action == "show":
            raise ConfigError(f"recipes show: name a recipe ({', '.join(RECIPES)})")
        print(f"{'name':5} {'epochs':>6} {'lr':>7} {'wd':>5} {'res':>8}  description")
        for r in RECIPES.values():
            print(f"{r.name:5} {r.epochs:>6} {r.lr:>7g} {r.weight_decay:>5g} {f'{r.img_size}/{r.test_img_size}':>8}  {r.description}")
        return 0
    print(_recipe_yaml(get_recipe(args.recipe)), end="")
    return 0


def _recipe_yaml(recipe) -> str:
    import yaml

    lines = [f"# {recipe.name}: {recipe.description}", "# ImageNet-1k / ResNet-50 values of the paper (arXiv 2110.00476)"]
    for key, value in recipe.to_dict().items():
        if key == "unconfirmed":
            continue
        text = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip().strip("{}")
        note = "  # unconfirmed: from community command lines, not the paper" if key in recipe.unconfirmed else ""
        lines.append(f"{text}{note}")
    lines.append(f"unconfirmed: {sorted(recipe.unconfirmed)}")
    return "\n".join(lines) + "\n"


def _cmd_keys(args) -> int:
    from rsb_tune.config import DERIVED_KEYS, FIELDS

    for key, f in FIELDS.items():
        extra = f" (one of {', '.join(map(str, f.choices))})" if f.choices else ""
        print(f"{key:18} {f.type.__name__:5}{' or null' if f.nullable else '':8} {f.help}{extra}")
    print(f"derived, recorded, not settable: {', '.join(DERIVED_KEYS)}")
    return 0


def _command_layers(args):
    from rsb_tune.config import Layer, parse_set

    layers = [Layer("--cpus-per-trial", {"threads": max(1, int(args.cpus_per_trial))})]
    if args.data:
        layers.append(Layer("--data", {"dataset": "folder", "data_path": str(Path(args.data).expanduser().resolve())}))
    for flag, key in (("model", "model"), ("epochs", "epochs"), ("batch_size", "batch_size"), ("workers_per_trial", "workers_per_trial")):
        value = getattr(args, flag)
        if value is not None:
            layers.append(Layer(f"--{flag.replace('_', '-')}", {key: value}))
    if args.set:
        layers.append(parse_set(args.set))
    return layers


def _dataset_of(layers) -> tuple[str, str | None]:
    dataset, path = "digits", None
    for layer in layers:
        dataset = layer.values.get("dataset", dataset)
        path = layer.values.get("data_path", path)
    return dataset, path


def _check_models(plan) -> None:
    """Every (model, model_kwargs) of the plan builds in timm (on the meta device: no memory)."""
    import timm
    import torch

    from rsb_tune.errors import suggest

    seen = set()
    for cfg in plan.trials.values():
        key = (cfg["model"], repr(sorted(cfg["model_kwargs"].items())))
        if key in seen:
            continue
        seen.add(key)
        if not timm.is_model(cfg["model"]):
            raise ConfigError(f"model: unknown timm model {cfg['model']!r}{suggest(cfg['model'], timm.list_models())}")
        try:
            with torch.device("meta"):
                timm.create_model(cfg["model"], num_classes=10, drop_path_rate=cfg["drop_path"], **cfg["model_kwargs"])
        except TypeError as e:
            raise ConfigError(f"model_kwargs {cfg['model_kwargs']} do not fit {cfg['model']}: {e}") from None
        import timm.optim

        if cfg["opt"].lower() not in timm.optim.list_optimizers():
            raise ConfigError(f"opt: unknown timm optimizer {cfg['opt']!r}; allowed: {', '.join(timm.optim.list_optimizers())}{suggest(cfg['opt'], timm.optim.list_optimizers())}")


def _plan_study(args):
    from rsb_tune.data import get_dataset
    from rsb_tune.recipes import get_recipe
    from rsb_tune.space import build_plan, load_space, seed_list

    layers = _command_layers(args)
    space = None
    if args.command == "grid":
        space = load_space(args.space)
        recipe, seeds, label = get_recipe(space.recipe), space.seeds, Path(args.space).stem
    else:
        if args.n < 1:
            raise ConfigError(f"--n must be >= 1, got {args.n}")
        recipe = get_recipe(args.recipe)
        seeds = seed_list({"start": args.seed_start, "n": args.n}, "--seed-start/--n")
        label = recipe.name
    dataset, _ = _dataset_of(layers)
    spec = get_dataset(dataset)
    plan = build_plan(recipe, spec.profile, seeds=seeds, space=space, command_line=layers)
    return recipe, spec, space, plan, label


def _check_storage(storage: str):
    from rsb_tune.storage import check_writable, locate

    location = locate(storage)
    check_writable(location)
    return location


def _cmd_study(args) -> int:
    import yaml

    from rsb_tune.data import load_splits
    from rsb_tune.study import Study, default_name, git_commit, package_versions

    recipe, spec, space, plan, label = _plan_study(args)
    _check_models(plan)
    if space is not None and space.scheduler:
        print(
            "rsb-tune: warning: `scheduler: asha` stops trials on intermediate epochs, while the paper selects on the "
            "final checkpoint only; early-stopped trials get status 'stopped' and their metrics are from fewer epochs",
            file=sys.stderr,
        )
    if args.dry_run and plan.resolver is not None:
        print(f"search: optuna, {space.num_samples} trials sampled from {', '.join(f'{k} ~ {kind}{list(v)}' for k, (kind, v) in space.params.items())}")
        print("base config (key: value  # source):")
        for key, value in plan.base.values.items():
            print(f"  {key}: {_yaml_scalar(value)}  # {plan.base.sources[key]}")
        return 0
    if args.dry_run:
        print(f"{len(plan.trials)} trials ({args.command}, recipe {recipe.name}, dataset {spec.name}); varied: {', '.join(plan.params) or 'seed'}")
        print("base config (key: value  # source):")
        for key, value in plan.base.values.items():
            print(f"  {key}: {_yaml_scalar(value)}  # {plan.base.sources[key]}")
        print("trials (each: the base config above with these keys changed):")
        for tid, cfg in plan.trials.items():
            diff = {k: v for k, v in cfg.items() if plan.base.values.get(k) != v}
            print(f"  {tid}: {yaml.safe_dump(diff, default_flow_style=True, width=10**6).strip()}")
        return 0
    storage = _check_storage(args.storage)
    _check_address(args)
    _check_tracking(args)
    name = args.name = args.name or default_name(args.command, label)
    study = Study(storage, name)
    data = load_splits(plan.base.values["dataset"], plan.base.values["data_path"])
    if study.exists():
        _check_same_plan(study, plan)
        print(f"study {name!r} exists with the same plan: resuming it", file=sys.stderr)
        return _run(study, data, args)
    meta = {
        "kind": args.command,
        "recipe": recipe.name,
        "metric": space.metric if space else "val_top1",
        "mode": space.mode if space else "max",
        "params": list(plan.params),
        "command": " ".join(["rsb-tune", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("rsb-tune") else " ".join(sys.argv),
        "base_config": _jsonable(plan.base.values),
        "base_config_sources": dict(plan.base.sources),
        "space": _jsonable(space.raw) if space else None,
        "space_file": space.path if space else None,
        "search": space.search if space else "grid",
        "num_samples": space.num_samples if space and space.search != "grid" else None,
        "scheduler": space.scheduler if space else None,
        "layers": [{"source": layer.source, "values": _jsonable(dict(layer.values))} for layer in plan.layers],
        "dataset": spec.name,
        "data_sizes": data.sizes(),
        "profile_notes": dict(spec.profile.why),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "run_options": _run_options_meta(args),
    }
    created = not study.dir.exists()
    study.dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = study.lock().acquire()
    except StudyError:
        if created and {p.name for p in study.dir.iterdir()} <= {".lock"}:
            shutil.rmtree(study.dir, ignore_errors=True)  # nothing of ours stays behind, nothing of another driver goes
        raise
    with lock:  # held from creation to the end of the run: one driver per study
        if study.exists():  # another driver created it between our check and the lock
            _check_same_plan(study, plan)
        else:
            study.create(meta, _jsonable(plan.trials))
        print(f"study {name}: {len(plan.trials)} trials -> {study.where}", file=sys.stderr)
        return _run(study, data, args, locked=True)


def _check_same_plan(study, plan) -> None:
    if study.require().plan() != _jsonable(plan.trials):
        raise StudyError(
            f"study {study.name!r} already exists in {study.location.display()} with a different command; "
            f"continue it with `rsb-tune resume {study.name}` or pick another --name"
        )


def _run_options_meta(args) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures", "address")}


def _yaml_scalar(v: Any) -> str:
    import json

    return json.dumps(v) if isinstance(v, (dict, list)) or v is None else str(v)


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj))


def _run(study, data, args, locked: bool = False) -> int:
    if not locked:
        with study.lock():
            return _run(study, data, args, locked=True)
    from rsb_tune.ray_adapter import RunOptions, run_study
    from rsb_tune.results import FINISHED as ended
    from rsb_tune.study import now_iso

    opts = RunOptions(
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        address=args.address,
        max_failures=args.max_failures,
        quiet=args.quiet,
        tracking=tuple(dict.fromkeys(args.tracking)),
    )
    counts = run_study(study, data, opts)
    study.update_meta(ended_at=now_iso())
    unfinished = counts["planned"] - sum(counts[s] for s in ended)
    print(
        f"study {study.name}: "
        + ", ".join(f"{counts[s]} {s}" for s in ended if counts[s] or s in ("ok", "diverged", "error"))
        + (f", {unfinished} unfinished" if unfinished else "")
        + f" of {counts['planned']} -> {study.where}",
        file=sys.stderr,
    )
    if unfinished and not counts["error"]:
        raise KeyboardInterrupt  # Ray Tune stopped early on a signal
    _print_status(study)
    return 0 if counts["error"] == 0 and unfinished == 0 else 1


def _check_address(args) -> None:
    from rsb_tune.ray_adapter import check_address

    check_address(args.address)


def _check_tracking(args) -> None:
    from rsb_tune.ray_adapter import check_tracking

    check_tracking(tuple(args.tracking))


def _cmd_resume(args) -> int:
    from rsb_tune.data import load_splits
    from rsb_tune.study import Study

    study = Study(args.storage, args.name).require()
    _check_address(args)
    _check_tracking(args)
    base = study.meta().get("base_config") or {}
    data = load_splits(base.get("dataset", "digits"), base.get("data_path"))
    return _run(study, data, args)


def _print_status(study) -> None:
    import math

    from rsb_tune.results import trial_state

    meta = study.meta()
    metric = meta.get("metric", "val_top1")
    counts: dict[str, int] = {}
    finals = []
    for tid in study.plan():
        status, by_epoch, _ = trial_state(study.events(tid))
        counts[status] = counts.get(status, 0) + 1
        if status == "ok" and by_epoch:
            finals.append((by_epoch[max(by_epoch)].get(metric, math.nan), tid))
    planned = f"{meta['num_samples']} trials to sample ({meta.get('search')})" if meta.get("num_samples") else f"{meta.get('n_trials')} trials planned"
    print(f"study {study.name} ({meta['kind']}, recipe {meta.get('recipe')}): {planned}")
    print("  " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "error", "stopped", "abandoned", "running", "pending") if counts.get(s) or s in ("ok", "error", "running")))
    if finals:
        import statistics

        vals = [v for v, _ in finals]
        best = (max if meta.get("mode", "max") == "max" else min)(finals)
        sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        print(f"  {metric}: mean {statistics.fmean(vals):.2f} ± {sd:.2f} (std, n={len(vals)}), best {best[0]:.2f} ({best[1]})")
    local = f" (local copy {study.dir})" if study.mirror else ""
    print(f"  started {meta.get('started_at')}, ended {meta.get('ended_at') or '-'}; tables in {study.where}{local}")


def _cmd_status(args) -> int:
    from rsb_tune.study import Study

    _print_status(Study(args.storage, args.name).require())
    return 0


def _analysis_call(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except ValueError as e:  # analysis.StudyError and bad tables are ValueErrors with a message
        raise StudyError(str(e)) from None


def _cmd_report(args) -> int:
    from analysis.report import write_report

    from rsb_tune.study import Study

    study = Study(args.storage, args.name).require()
    out = _analysis_call(write_report, study.dir, args.out)
    print(f"report: {Path(out) / 'index.html' if Path(out).is_dir() else out}")
    if study.mirror and Path(out).resolve().is_relative_to(study.dir.resolve()):
        study.sync(only=Path(out))  # the report, next to the study in the store (a driver may own the rest)
        print(f"report uploaded to {study.where}/{Path(out).resolve().relative_to(study.dir.resolve()).as_posix()}")
    return 0


def _cmd_compare(args) -> int:
    from analysis.report import write_compare_report

    from rsb_tune.study import Study

    a = Study(args.storage, args.name_a).require()
    b = Study(args.storage, args.name_b).require()
    out = args.out or str(a.storage / f"compare-{a.name}-vs-{b.name}")
    out = _analysis_call(write_compare_report, a.dir, b.dir, out)
    print(f"comparison: {Path(out) / 'index.html' if Path(out).is_dir() else out}")
    return 0


def _cmd_serve(args) -> int:
    from rsb_tune.serve import serve

    serve(args.storage, args.host, args.port, args.token)
    return 0


_COMMANDS = {
    "seeds": _cmd_study,
    "grid": _cmd_study,
    "resume": _cmd_resume,
    "status": _cmd_status,
    "report": _cmd_report,
    "compare": _cmd_compare,
    "recipes": _cmd_recipes,
    "keys": _cmd_keys,
    "serve": _cmd_serve,
}


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return _COMMANDS[args.command](args)
    except UserError as e:
        print(f"rsb-tune: error: {e}", file=sys.stderr)
        if isinstance(e, StoreUnreachable):  # do not wait for the store client's hanging request
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.exit_code)
        return e.exit_code
    except BrokenPipeError:  # `rsb-tune ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        name = getattr(args, "name", None)
        hint = f"; continue with `rsb-tune resume {name}`" if name else ""
        print(f"rsb-tune: stopped{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
