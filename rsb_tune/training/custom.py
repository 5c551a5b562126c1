"""Your own training code as a trial: a function ``train(config, report)``, or a command.

A study planned with ``trainer=`` (``--trainer my_pkg.module:train`` or ``path/file.py:train``)
or ``--trainer-cmd "python train.py --seed {seed}"`` records the trainer in every trial's config
(key ``trainer`` or ``trainer_cmd``); the executors call :func:`trial_function`, which picks
:func:`train_custom` for it, with the same signature as the built-in
:func:`rsb_tune.training.trial.train`. So the trial runs through the same executors, event logs,
checkpoints and tables as a built-in one.

The trainer receives the trial's config (the user's keys and the seeds ``seed``, ``model_seed``,
``data_seed``, ``aug_seed``) and calls ``report(epoch=E, **metrics)`` after each epoch (E = 1, 2,
...). To make resume continue a trial rather than restart it, it passes ``checkpoint=state`` (a
dict of tensors, arrays, numbers, strings, lists and dicts) and reads ``report.resume`` at its
start: the last state it passed, or None. A trainer that saves no state starts over on resume.
A command writes one JSON object a line (``{"epoch": 1, "val_top1": 91.2}``) to the file named
by ``$RSB_TUNE_METRICS`` (also the ``{metrics}`` placeholder); it always starts over.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from analysis import contract as C
from rsb_tune.errors import ConfigError

__all__ = ["TRAINER", "TRAINER_CMD", "OURS", "METRICS_ENV", "load_trainer", "check_trainer", "check_command", "trial_function", "train_custom", "user_config"]

TRAINER = "trainer"  # a trial config's key: the trainer's import path ("pkg.mod:fn", "/abs/file.py:fn")
TRAINER_CMD = "trainer_cmd"  # a trial config's key: the command template
METRICS_ENV = "RSB_TUNE_METRICS"  # the JSON-lines file a command writes its metrics to
# what rsb-tune puts in a custom trial's config besides the user's keys (the trainer never sees the first two)
OURS = (TRAINER, TRAINER_CMD, "threads")
_RESERVED_METRICS = frozenset({"type", "time", "status", "epoch", "checkpoint", *C.SEED_COLUMNS, "trial_id"})
_LOADED: dict[str, Callable] = {}


def load_trainer(spec: str) -> Callable:
    """The function named by ``spec``: ``package.module:function`` (importable here) or
    ``path/to/file.py:function``. :class:`ConfigError` naming ``--trainer`` otherwise."""
    if spec in _LOADED:
        return _LOADED[spec]
    where, _, name = str(spec).rpartition(":")
    if not where or not name.isidentifier():
        raise ConfigError(f"--trainer {spec!r}: expected module:function or path/file.py:function")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"--trainer {spec!r}: no file {where}")
            module_name = f"rsb_tune_trainer_{abs(hash(str(path.resolve())))}"
            loader = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[module_name] = module
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:  # the user's module failed to import: say why in one line
        raise ConfigError(f"--trainer {spec!r}: cannot import {where}: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"--trainer {spec!r}: {where} has no function {name!r}")
    _LOADED[spec] = fn
    return fn


def check_trainer(trainer: Any) -> str:
    """The import path recorded for ``trainer`` (a spec string, or a function defined at the top
    level of an importable module); a path form is made absolute, so that a Ray worker in
    another directory finds it."""
    if callable(trainer):
        module, name = getattr(trainer, "__module__", None), getattr(trainer, "__qualname__", "")
        if module in (None, "__main__") or "." in name or "<" in name:
            file = getattr(sys.modules.get(module or ""), "__file__", None)
            if module == "__main__" and file and name.isidentifier():
                spec = f"{Path(file).resolve()}:{name}"
            else:
                raise ConfigError(f"trainer={trainer!r}: a trainer must be a top-level function of a module or file (it is imported again where the trial runs, and by `resume`)")
        else:
            spec = f"{module}:{name}"
        _LOADED.setdefault(spec, trainer)  # this process has it: not imported again (a script's __main__ would run twice)
    elif isinstance(trainer, str):
        where, _, name = trainer.rpartition(":")
        spec = f"{Path(where).resolve()}:{name}" if where.endswith(".py") else trainer
    else:
        raise ConfigError(f"trainer: expected a function or 'module:function', got {trainer!r}")
    load_trainer(spec)
    return spec


def check_command(command: Any) -> str:
    """A ``--trainer-cmd`` template: a non-empty string whose placeholders are config keys
    (checked per trial) or ``{metrics}``."""
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"--trainer-cmd: expected a command line, got {command!r}")
    try:
        shlex.split(command)
    except ValueError as e:
        raise ConfigError(f"--trainer-cmd {command!r}: {e}") from None
    return command


def user_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the trainer sees: the trial's config without rsb-tune's own keys (:data:`OURS`)."""
    return {k: v for k, v in config.items() if k not in OURS}


def trial_function(config: Mapping[str, Any]) -> Callable:
    """The function that trains the trial of ``config``: :func:`train_custom` for a study of
    your own trainer, else the built-in :func:`rsb_tune.training.trial.train`."""
    if TRAINER in config or TRAINER_CMD in config:
        return train_custom
    from rsb_tune.training.trial import train

    return train


class _Report:
    """The ``report`` a custom trainer calls: ``report(epoch=E, **metrics, checkpoint=None)``.
    ``resume``: the state of the last checkpoint (None on a fresh start)."""

    def __init__(self, send, resume_state):
        self._send, self.resume = send, resume_state
        self.last: dict[str, Any] | None = None

    def __call__(self, *, epoch: int, checkpoint: Mapping[str, Any] | None = None, **metrics: Any) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"report(epoch=...) must be an integer >= 1, got {epoch!r}")
        reserved = sorted(set(metrics) & _RESERVED_METRICS)
        if reserved:
            raise ValueError(f"report(): {', '.join(reserved)} is rsb-tune's; name the metric otherwise")
        values = {}
        for name, value in metrics.items():
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"report(): metric {name!r} must be a number, got {value!r}") from None
        self.last = {"epoch": epoch, "values": values, "epoch_time_s": self._send(epoch, values, checkpoint)}


def _result(epoch: int, values: Mapping[str, float], status: str, started: float) -> dict[str, Any]:
    ours = {k: v for k, v in values.items() if k in C.RESULT_KEYS}
    theirs = {k: v for k, v in values.items() if k not in C.RESULT_KEYS}
    return {"epoch": epoch, "status": status, "epoch_time_s": time.perf_counter() - started, **ours, C.USER_METRICS: theirs}


def train_custom(config: Mapping[str, Any], report, data=None, *, resume: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A trial of your own trainer (or command), reporting as the built-in trial does: each
    epoch's metrics with status ``running`` (and the trainer's checkpoint, if it gave one), and
    once it returns, its last epoch again with status ``ok`` (``diverged`` when the study's
    metrics are not finite). ``data`` is unused: your trainer loads its own."""
    import torch

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    clock = {"t": time.perf_counter()}
    state: dict[str, Any] = {"model": None if resume is None else resume.get("model")}

    def send(epoch, values, checkpoint):
        ckpt = None
        if checkpoint is not None:
            state["model"] = dict(checkpoint)
            ckpt = {"epoch": epoch, "model": state["model"], "values": dict(values)}  # values: a trial cut after its last epoch ends from them
        result = _result(epoch, values, C.RUNNING, clock["t"])
        report(result, checkpoint=ckpt)
        clock["t"] = time.perf_counter()
        return result["epoch_time_s"]

    reporter = _Report(send, state["model"])
    if TRAINER_CMD in config:
        _run_command(config, reporter)
    else:
        load_trainer(config[TRAINER])(user_config(config), reporter)
    if reporter.last is None and resume is not None and isinstance(resume.get("values"), Mapping):
        # cut between its last epoch's checkpoint and the final report: the trainer had nothing
        # left to run, and its last epoch's values are the result
        reporter.last = {"epoch": int(resume["epoch"]), "values": dict(resume["values"]), "epoch_time_s": 0.0}
    if reporter.last is None:
        raise RuntimeError("the trainer returned without calling report(epoch=..., ...) once")
    values = reporter.last["values"]
    status = C.DIVERGED if any(not math.isfinite(v) for v in values.values()) else C.OK
    final = {**_result(reporter.last["epoch"], values, status, 0.0), "epoch_time_s": reporter.last["epoch_time_s"]}
    report(final, checkpoint={"epoch": reporter.last["epoch"], "model": state["model"]} if state["model"] is not None else None)
    return final


class _Placeholders(dict):
    def __missing__(self, key):
        raise KeyError(key)


def _run_command(config: Mapping[str, Any], report: _Report) -> None:
    """Run the command of ``config``; each line it appends to ``$RSB_TUNE_METRICS`` is reported
    as it arrives. A command that fails raises with the end of its stderr."""
    with tempfile.TemporaryDirectory(prefix="rsb-cmd-") as d:
        metrics = Path(d) / "metrics.jsonl"
        metrics.touch()
        values = _Placeholders({k: v for k, v in user_config(config).items()}, metrics=str(metrics))
        try:
            command = config[TRAINER_CMD].format_map(values)
        except KeyError as e:
            raise ValueError(f"--trainer-cmd: placeholder {{{e.args[0]}}} is not a config key (keys: {', '.join(sorted(values))})") from None
        env = {**os.environ, METRICS_ENV: str(metrics), "RSB_TUNE_CONFIG": json.dumps(user_config(config))}
        err = Path(d) / "stderr.txt"
        with open(err, "wb") as stderr:
            proc = subprocess.Popen(shlex.split(command), env=env, stdout=subprocess.DEVNULL, stderr=stderr)
            offset = 0
            try:
                while True:
                    done = proc.poll() is not None
                    offset = _read_lines(metrics, offset, report)
                    if done:
                        break
                    time.sleep(0.1)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if proc.returncode != 0:
            tail = err.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"--trainer-cmd exited with {proc.returncode}: {command}" + (f": {' | '.join(tail)}" if tail else ""))


def _read_lines(path: Path, offset: int, report: _Report) -> int:
    """Report the whole lines written after ``offset``; the new offset."""
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    for number, line in enumerate(chunk[:end].decode().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"${METRICS_ENV}: a line is not JSON: {line[:200]!r}") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise ValueError(f"${METRICS_ENV}: each line must be an object with an epoch, got {line[:200]!r}")
        report(**record)
    return offset + end
