"""The ``rsb-tune`` command line.

Run-level options and a generic ``--set key=value`` live here; hyperparameters live in the
recipe and the space file. Heavy imports (torch, timm, ray) happen inside the commands that
need them, so ``rsb-tune --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, Sequence

from rsb_tune.errors import ConfigError, Interrupted, StoreUnreachable, UserError, spoken_as_flags
from rsb_tune.options import MAX_TRIALS, RUN_OPTIONS, STORAGE_ENV, default_storage

__all__ = ["main", "build_parser"]


def _add_storage(p) -> None:
    """``--storage``, whose default is read when the parser is built (``$RSB_TUNE_STORAGE``)."""
    p.add_argument(
        "--storage",
        default=default_storage(),
        help="where studies live: a directory, shared by every node on a cluster, or an object store: s3://BUCKET/PREFIX, "
        f"gs://BUCKET/PREFIX (default %(default)s: ${STORAGE_ENV} when set, else ./rsb-results)",
    )


_EPILOG = """\
examples:
  rsb-tune seeds --n 100 --recipe A2          the paper's seed study on the embedded digits
  rsb-tune grid --space lamb_bce              a shipped space (see `rsb-tune spaces`), or a path
  rsb-tune seeds --n 5 --recipe A3 --data ~/imagenette --set drop_path=0.05
  rsb-tune status NAME ; rsb-tune resume NAME ; rsb-tune report NAME
  rsb-tune eval NAME --test-size 24 32 40 --crop-pct 0.875 1.0   re-score the trained weights
  rsb-tune finetune --from NAME               fine-tune each trial's weights (digits: onto digits-parity)
  rsb-tune recipes show A2 ; rsb-tune recipes show recipes/mine.yaml ; rsb-tune keys

precedence of config values: recipe < dataset profile < space file < --model/--epochs/... < --set
python: import rsb_tune; rsb_tune.seeds(n=4, recipe="A2", epochs=2)  (the same options as keywords)
"""

_EXPERIMENT_FLAGS = ("data", "dataset", "data_dir", "model", "epochs", "batch_size", "workers_per_trial", "pack")


def _add_study_options(p: argparse.ArgumentParser, *, without: Sequence[str] = ()) -> None:
    """The study's flags, those named in ``without`` left out (a fine-tune keeps its source's model)."""
    g = p.add_argument_group("study")
    g.add_argument("--name", help="study name (default: kind, recipe or space, and the time)")
    _add_storage(g)
    g.add_argument("--dry-run", action="store_true", help="print how many trials would run and each resolved config (of a large plan: the first few), then exit")
    g.add_argument("--max-trials", type=int, default=MAX_TRIALS, metavar="N", help=f"refuse a study of more trials than this, before anything is planned (default {MAX_TRIALS:,})")
    c = p.add_argument_group("what is trained (shorthands for --set; part of the study's plan)")
    c.add_argument("--data", metavar="PATH", help="short for a folder dataset: a root with train/, val/ and optional v2/ (folders or .tar files), or one .tar of them (default: the embedded digits)")
    c.add_argument("--dataset", metavar="NAME", help="timm dataset name: torch/cifar10, torch/cifar100, torch/mnist, ..., hfds/NAME, wds/NAME, folder (with --data-dir)")
    c.add_argument("--data-dir", metavar="ROOT", help="root of --dataset's files (nothing is downloaded)")
    if "--model" not in without:
        c.add_argument("--model", help="timm model name (default: the dataset profile's)")
    c.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the dataset profile)")
    c.add_argument("--batch-size", type=int, help="global batch size (the lr is rescaled to it)")
    if "--workers-per-trial" not in without:
        c.add_argument("--workers-per-trial", type=int, help="data-parallel (DDP) workers per trial through Ray Train, each with --cpus/--gpus-per-trial; the global batch is kept (default 1)")
    c.add_argument("--pack", metavar="K", help="train K seeds together in one process, batched (torch.func.vmap); auto: up to 32 on a GPU, 1 on CPU (default 1)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key (repeatable; see `rsb-tune keys`)")
    _add_run_options(p)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """One flag per field of rsb_tune.options.RunOptions (the API's keyword arguments)."""
    r = p.add_argument_group("execution (may change between runs of a study; not part of its plan)")
    for f in RUN_OPTIONS:
        flag, meta = f"--{f.name.replace('_', '-')}", f.metadata
        shown = f" (default {f.default})" if f.default not in (None, (), False) else ""
        if meta["repeat"]:
            r.add_argument(flag, action="append", default=[], choices=meta["choices"], help=meta["help"])
        elif f.type == "bool" or isinstance(f.default, bool):
            r.add_argument(flag, action="store_true", help=meta["help"])
        else:
            r.add_argument(flag, type=meta["type"] or str, default=f.default, metavar=meta["metavar"] or "N", help=meta["help"] + shown)


def _add_trainer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own training code (docs/own-trainer.md; --set then gives its config, free-form)")
    g.add_argument("--trainer", metavar="MODULE:FN", help="a function train(config, report): my_pkg.module:train or path/file.py:train")
    g.add_argument("--trainer-cmd", metavar="COMMAND", help='a command run per seed, e.g. "python train.py --seed {seed}"; it appends JSON lines {"epoch": 1, ...} to $RSB_TUNE_METRICS ({metrics})')


def _trainer(args) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("trainer", "trainer_cmd") if getattr(args, k, None) is not None}


def _add_rule_options(p: argparse.ArgumentParser, *, until: bool) -> None:
    """The flags of a sequential study's rule (validated by rsb_tune.sequential.rule, defaults there)."""
    g = p.add_argument_group("sequential study (anytime-valid intervals; see docs/sequential.md)")
    if until:
        g.add_argument("--until", metavar="RULE", help="stop once the anytime interval of the mean is this narrow: 'halfwidth<=X'; --n is then the cap")
    g.add_argument("--level", type=float, help="confidence level of the anytime interval (default 0.95)")
    g.add_argument("--metric", help="final metric the rule follows (default val_top1; with --trainer: the metric the study follows, any the trainer reports)")
    g.add_argument("--method", help="confidence sequence: t_mixture (default) or betting")


def _rule(args) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("until", "level", "metric", "method") if hasattr(args, k)}


def _run_options(args) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in RUN_OPTIONS}


class _Parser(argparse.ArgumentParser):
    """argparse's refusals (a missing or malformed flag) on one line with exit code 2, as every
    other error of the command line; ``--help`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from rsb_tune.planning.recipes import DEFAULT_RECIPE

    parser = _Parser(
        prog="rsb-tune",
        description="ResNet-strikes-back style hyperparameter grids and seed studies (timm + Ray Tune).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("seeds", help="one recipe under many seeds", description="Run a recipe under seeds S..S+N-1 (the paper's 100-seed study of A2).")
    p.add_argument("--n", type=int, required=True, help="number of seeds (with --until: the cap)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"recipe: A1, A2, A3, T2, a project recipe (recipes/NAME.yaml) or the path of a recipe YAML (default {DEFAULT_RECIPE})")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    _add_trainer_options(p)
    _add_rule_options(p, until=True)
    _add_study_options(p)

    p = sub.add_parser("grid", help="a coarse grid from a space file", description="Run the grid (or search) of a space file under each of its seeds.")
    p.add_argument("--space", required=True, help="a space YAML file, or the name of a shipped one (lamb_bce, optimizers, ...: see `rsb-tune spaces`); an existing path wins")
    p.add_argument("--n", type=int, help="seeds per grid point, from the space's first seed (default: the space file's seeds)")
    _add_trainer_options(p)
    _add_study_options(p)

    p = sub.add_parser("ab", help="A against B on the same seeds, until decided", description="Run two seed studies NAME-a and NAME-b on the same seeds, in rounds, until the anytime interval of mean(a - b) excludes 0 (one is better) or lies inside +-delta (equivalent), or the cap.")
    p.add_argument("--n", type=int, required=True, help="the cap: at most this many seeds per arm")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"arm a's recipe (default {DEFAULT_RECIPE})")
    p.add_argument("--vs-recipe", help="arm b's recipe (default: arm a's)")
    p.add_argument("--vs-set", action="append", default=[], metavar="KEY=VALUE", help="override a config key of arm b only (repeatable); --set is arm a's")
    p.add_argument("--delta", type=float, help="equivalence margin: stop as 'equivalent' once the interval of mean(a - b) lies inside +-delta")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    _add_trainer_options(p)
    _add_rule_options(p, until=False)
    _add_study_options(p)

    p = sub.add_parser("plan-seeds", help="how many seeds a question needs, from a finished study", description="From a finished study's seed std and test-set noise floor: the seeds needed for an interval half-width, and to detect a difference delta (power 0.8, alpha 0.05), independent and paired.")
    p.add_argument("name")
    p.add_argument("--halfwidth", type=float, action="append", help="target half-width of the mean's interval (repeatable; default 0.25 0.3 0.5)")
    p.add_argument("--delta", type=float, action="append", help="difference to detect (repeatable; default 0.25 0.5 1.0)")
    p.add_argument("--vs", metavar="OTHER", help="a study on the same seeds: the paired differences' std for the paired rows")
    p.add_argument("--metric", help="the metric (default: the study's)")
    _add_storage(p)

    p = sub.add_parser("import", help="results made elsewhere (CSV, parquet) as studies", description="Write a results file as a study every command reads: one row per seed (or seed and epoch), a `seed` column, metric columns, and optionally `arm` (one study NAME-ARM per arm, for compare), `task`, `epoch` and config keys (text columns, or numeric ones named with --config). See docs/own-trainer.md.")
    p.add_argument("file", help="a .csv, .tsv, .parquet or .jsonl file")
    p.add_argument("--name", required=True, help="the study's name (with an arm column: NAME-ARM per arm)")
    p.add_argument("--metric", help="the metric column the study follows (default val_top1 when present, else the first numeric column)")
    p.add_argument("--mode", choices=("max", "min"), help="whether higher or lower is better (default: min for *loss, else max)")
    p.add_argument("--config", action="append", default=[], metavar="COLUMN", help="a numeric column that is a config key, not a metric (repeatable)")
    _add_storage(p)

    p = sub.add_parser("resume", help="continue a study whose driver stopped", description="Continue a study: finished trials are kept, unfinished ones continue from their last checkpoint.")
    p.add_argument("name")
    _add_storage(p)
    _add_run_options(p)

    p = sub.add_parser("status", help="where a study stands", description="Trials done / running / failed and the best and mean results so far.")
    p.add_argument("name")
    _add_storage(p)

    p = sub.add_parser("report", help="figures and statistics of a study", description="Write figures (PNG, SVG), summary.json, summary.md and index.html.")
    p.add_argument("name")
    _add_storage(p)
    p.add_argument("--out", help="output directory (default <study>/report)")

    p = sub.add_parser("compare", help="compare two studies", description="Is recipe A really better than recipe B? Prints the verdict (A - B with its 95% Welch interval, P(A > B) over seed pairs, the decision), warns when the studies differ in more than what is compared, and writes a comparison report.")
    p.add_argument("name_a")
    p.add_argument("name_b")
    _add_storage(p)
    p.add_argument("--out", help="output directory (default <storage>/compare-A-vs-B)")
    p.add_argument("--metric", help="the metric (default: A's)")
    p.add_argument("--key", action="append", default=[], metavar="KEY", help="a config key the studies are meant to differ in (repeatable); the recipe and what follows from it always are; other differences are warned about")

    p = sub.add_parser("eval", help="re-score a study's trained weights at other settings and on other test sets", description="Evaluate every ok trial's final weights at each test resolution x crop ratio (default: the trial's own) on each test set, into <study>/evals.parquet; run again, it evaluates only what is missing.")
    p.add_argument("name")
    p.add_argument("--test-size", type=int, nargs="+", default=[], metavar="PX", help="test resolutions (default: the trial's test_img_size)")
    p.add_argument("--crop-pct", type=float, nargs="+", default=[], metavar="R", help="centre-crop ratios in (0, 1] (default: the trial's crop_pct)")
    p.add_argument("--split", nargs="+", default=["val"], metavar="SPLIT", help="the study's test splits: val, v2 (default val)")
    p.add_argument("--test-set", action="append", default=[], metavar="NAME=PATH", help="an extra test set: a *_data.npy/*_labels.npy pair or a folder of class folders (repeatable)")
    p.add_argument("--labels", metavar="JSON", help="multi-label file for val (ImageNet-ReaL's real.json: a list of label lists, one per val image): adds the test set 'real'")
    _add_storage(p)
    _add_run_options(p)

    p = sub.add_parser("finetune", help="fine-tune a study's trained weights on another dataset", description="A new study (kind finetune) whose trial i starts from trial i of --from's final weights with a new classifier head, trained with DeiT's fine-tuning recipe on --dataset (default for a digits source: digits-parity).")
    p.add_argument("--from", dest="source", required=True, metavar="NAME", help="the source study (its ok trials with a final checkpoint)")
    _add_study_options(p, without=("--model", "--workers-per-trial"))

    p = sub.add_parser("recipes", help="list the recipes, or show one as YAML", description="List the recipes (A1/A2/A3, T2 and the project's recipes/*.yaml), or print one as YAML with the source of each value.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("recipe", nargs="?", metavar="NAME|PATH")

    sub.add_parser("keys", help="list every config key with its type and help")
    sub.add_parser("spaces", help="list the shipped space files and the question each answers")

    from rsb_tune.serve import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV  # no web stack imported here

    p = sub.add_parser("serve", help="browse every study of a storage in a web browser", description="A read-only study browser: every study of the storage, live while they run (figures, trials, comparisons, a JSON API).")
    _add_storage(p)
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only; any other needs a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--token", help=f"token that every request must present (default ${TOKEN_ENV}); required for a non-local --host")
    return parser


# --------------------------------------------------------------------------- commands


def _cmd_recipes(args) -> int:
    from rsb_tune.planning.recipes import get_recipe, recipe_names

    if args.action == "list" or not args.recipe:
        if args.action == "show":
            raise ConfigError(f"recipes show: name a recipe ({', '.join(recipe_names())}) or give the path of a recipe file")
        recipes = [get_recipe(name) for name in recipe_names()]
        width = max(5, *(len(r.name) for r in recipes))
        print(f"{'name':{width}} {'epochs':>6} {'opt':>6} {'lr':>7} {'wd':>5} {'res':>8}  description")
        for r in recipes:
            where = f" ({r.path})" if r.path else ""
            print(f"{r.name:{width}} {r.epochs:>6} {r.opt:>6} {r.lr:>7g} {r.weight_decay:>5g} {f'{r.img_size}/{r.test_img_size}':>8}  {r.description}{where}")
        return 0
    print(_recipe_yaml(get_recipe(args.recipe)), end="")
    return 0


def _recipe_yaml(recipe) -> str:
    """A recipe as YAML: each value with a comment naming its source where it is not the recipe itself."""
    import yaml

    lines = [f"# {recipe.name}: {recipe.description}", f"# {recipe.reference}"]
    for key, value in recipe.to_dict().items():
        if key == "unconfirmed":
            continue
        text = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip().strip("{}")
        notes = [recipe.source_of(key)] if recipe.path and key not in ("name", "description", "paper_val_top1", "paper_v2_top1") else []
        if key in recipe.unconfirmed:
            notes.append("unconfirmed: not in the source, from community command lines")
        lines.append(text + (f"  # {'; '.join(notes)}" if notes else ""))
    lines.append(f"unconfirmed: {sorted(recipe.unconfirmed)}")
    return "\n".join(lines) + "\n"


def _cmd_keys(args) -> int:
    from rsb_tune.planning.config import DERIVED_KEYS, FIELDS, SCOPES

    for key, f in FIELDS.items():
        extra = f" (one of {', '.join(map(str, f.choices))})" if f.choices else ""
        print(f"{key:18} {f.type.__name__:5}{' or null' if f.nullable else '':8} {f.scope:6} {f.help}{extra}")
    print(f"derived, recorded, not settable: {', '.join(DERIVED_KEYS)}")
    print("scopes: " + "; ".join(f"{name}: {text}" for name, text in SCOPES.items()))
    return 0


def _cmd_spaces(args) -> int:
    from rsb_tune.api import spaces

    shipped = spaces()
    width = max(map(len, shipped))
    for name, question in shipped.items():
        print(f"{name:{width}}  {question}")
    print("use: rsb-tune grid --space NAME (or a path to your own file)")
    return 0


def _experiment(args) -> dict[str, Any]:
    out = {k: getattr(args, k) for k in _EXPERIMENT_FLAGS if getattr(args, k, None) is not None}
    if args.set:
        out["overrides"] = args.set
    return out


def _dry_run_or_start(plan, args) -> int:
    """A planned study: with --dry-run, what it would run; else run it, exit code from its status."""
    from rsb_tune import api

    if args.dry_run:
        print("\n".join(plan.describe()))
        return 0
    study = api.start(plan, storage=args.storage, name=args.name, **_run_options(args))
    return study.status().exit_code


def _cmd_study(args) -> int:
    from rsb_tune import api

    size = {"max_trials": args.max_trials, "lazy": args.dry_run}  # a dry run never expands the plan
    if args.command == "grid":
        plan = api.plan_grid(args.space, n=args.n, **size, **_trainer(args), **_experiment(args))
    else:
        plan = api.plan_seeds(args.n, args.recipe, seed_start=args.seed_start, **size, **_rule(args), **_trainer(args), **_experiment(args))
    return _dry_run_or_start(plan, args)


def _cmd_ab(args) -> int:
    from rsb_tune import api

    experiment = _experiment(args)
    overrides = experiment.pop("overrides", None)
    paired = api.plan_ab(args.n, args.recipe, args.vs_recipe, delta=args.delta, seed_start=args.seed_start, overrides=overrides, vs_overrides=args.vs_set or None, max_trials=args.max_trials, **_rule(args), **_trainer(args), **experiment)
    if args.dry_run:
        print("\n".join(paired.describe()))
        return 0
    result = api.start_ab(paired, storage=args.storage, name=args.name, **_run_options(args))
    print("\n".join(result.lines()))
    return result.exit_code


def _cmd_plan_seeds(args) -> int:
    from rsb_tune import api

    kwargs = {k: tuple(v) for k, v in (("halfwidths", args.halfwidth), ("deltas", args.delta)) if v}
    table = api.seeds_needed_table(args.name, vs=args.vs, metric=args.metric, storage=args.storage, **kwargs)
    print(f"seeds needed, from {args.name} ({table.attrs['n_seeds']} ok seeds of {table.attrs['metric']}; sigma {table['sigma'].iloc[0]:.3g}, {table.attrs['spread']}):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if "n_anytime" in table and table["n_anytime"].isna().any():
        from analysis.sequential import SIM_LIMIT

        print(f"n_anytime NaN: not simulated, the target needs more than {SIM_LIMIT} seeds at a fixed n")
    return 0


def _cmd_import(args) -> int:
    from rsb_tune import api

    studies = api.import_results(args.file, name=args.name, storage=args.storage, metric=args.metric, mode=args.mode, config=args.config)
    for study in studies:
        print(f"imported {study.name}: {len(study.plan)} trials, {study.meta['metric']} -> {study.where}")
    if len(studies) == 2:
        print(f"compare them: rsb-tune compare {studies[0].name} {studies[1].name}" + (f" --storage {args.storage}" if args.storage != default_storage() else ""))
    return 0


def _cmd_resume(args) -> int:
    from rsb_tune import api

    result = api.resume(args.name, storage=args.storage, **_run_options(args))
    return result.exit_code if isinstance(result, api.PairedResult) else result.status().exit_code


def _cmd_status(args) -> int:
    from rsb_tune import api

    study = api.load(args.name, args.storage)
    print("\n".join(study.status().lines()))
    if study.directory.mirror:
        print(f"  local copy {study.path}")
    return 0


def _cmd_report(args) -> int:
    from rsb_tune import api

    study = api.load(args.name, args.storage)
    out = study.report(args.out)
    print(f"report: {out / 'index.html' if out.is_dir() else out}")
    if study.directory.mirror and out.resolve().is_relative_to(study.path.resolve()):
        print(f"report uploaded to {study.where}/{out.resolve().relative_to(study.path.resolve()).as_posix()}")
    return 0


def _cmd_finetune(args) -> int:
    from rsb_tune import api

    experiment = _experiment(args)
    plan = api.plan_finetune(args.source, dataset=experiment.pop("dataset", None), storage=args.storage, **experiment)
    return _dry_run_or_start(plan, args)


def _cmd_eval(args) -> int:
    from rsb_tune import api

    study = api.load(args.name, args.storage)
    table = study.evaluate(test_sizes=args.test_size, crop_pcts=args.crop_pct, splits=args.split, test_sets=args.test_set, labels=args.labels, **_run_options(args))
    summary = table.groupby(["test_set", "test_img_size", "crop_pct"])["top1"].agg(["count", "mean", "std"]).reset_index()
    print(summary.rename(columns={"count": "trials", "mean": "top1 mean", "std": "top1 std"}).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"evals: {study.where}/evals.parquet ({len(table)} rows)")
    return 0


def _cmd_compare(args) -> int:
    from rsb_tune import api

    result = api.compare(args.name_a, args.name_b, storage=args.storage, out=args.out, metric=args.metric, keys=args.key)
    print(result.line(), flush=True)
    for warning in result.warnings:
        print(f"rsb-tune: warning: {warning}", file=sys.stderr, flush=True)
    print(f"report: {result.report / 'index.html'}")
    return 0


def _cmd_serve(args) -> int:
    from rsb_tune.serve import serve

    serve(args.storage, args.host, args.port, args.token)
    return 0


_COMMANDS = {
    "seeds": _cmd_study,
    "grid": _cmd_study,
    "ab": _cmd_ab,
    "plan-seeds": _cmd_plan_seeds,
    "import": _cmd_import,
    "resume": _cmd_resume,
    "status": _cmd_status,
    "report": _cmd_report,
    "compare": _cmd_compare,
    "eval": _cmd_eval,
    "finetune": _cmd_finetune,
    "recipes": _cmd_recipes,
    "keys": _cmd_keys,
    "spaces": _cmd_spaces,
    "serve": _cmd_serve,
}


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with spoken_as_flags():  # the API's messages name its arguments as this command line's flags
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
    except KeyboardInterrupt as e:
        name = e.study if isinstance(e, Interrupted) else getattr(args, "name", None)
        storage = getattr(args, "storage", None)
        hint = f"; continue with `rsb-tune resume {name}" + (f" --storage {storage}" if storage not in (None, default_storage()) else "") + "`" if name else ""
        print(f"rsb-tune: stopped{hint}", file=sys.stderr)
        return 130


def exit_now(code: int | None) -> None:
    """End the process with ``code`` as the interpreter would, less its finalization: the exit
    handlers run (Ray's shutdown, logging's flush, temporary folders, multiprocessing's
    children) and the streams are flushed, then ``os._exit``. Tearing down the modules of a
    process that imported torch costs ~1 s and does nothing a command needs. While a non-daemon
    thread still runs, the normal exit waits for it instead."""
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    try:
        atexit._run_exitfuncs()  # CPython's own call at exit (the module has no public one)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken pipe: nothing left to write to
                pass
        os._exit(code or 0)


def entry() -> None:
    """The ``rsb-tune`` command: :func:`main`, then :func:`exit_now`."""
    exit_now(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
