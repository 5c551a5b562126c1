"""Property-based tests (Hypothesis) of the readers of user and study input: the space-file
parser, the event-log reader, the manifest reader and the command line's argument layer. The
invariant: bad input is one line (a ``UserError``, exit code 2, no traceback) or a damaged
state, and nothing is written.

The examples are bounded so the file runs in CI in well under a minute: the profile ``ci``
(the default; ``HYPOTHESIS_PROFILE=dev`` runs ten times more) derandomizes them, so a failure
reproduces. Inputs that found bugs are kept as explicit ``@example``s.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rsb_tune
from rsb_tune.errors import ConfigError, UserError
from rsb_tune.planning.config import FIELDS
from rsb_tune.planning.space import SPACE_KEYS, load_space
from rsb_tune.store.directory import parse_meta
from rsb_tune.store.events import parse_event_lines, trial_state
from rsb_tune.store.status import read_status
from tests.serve_helpers import make_study

_COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=400, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _scaled(n: int):
    """``n`` examples under the ci profile, proportionally more under another."""
    return settings(max_examples=max(1, n * settings.default.max_examples // 40))


# --------------------------------------------------------------------------- strategies

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10), st.sampled_from(["A2", "lamb", "val_top1", "max", "2026-11-30 10:00:00", "asha", "optuna", "grid", "1e-3"]),
)  # fmt: skip
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
_config_keys = st.sampled_from(sorted(FIELDS)[:20] + ["seed", "recipe", "dataset", "nope"])
_distributions = st.dictionaries(st.sampled_from(["loguniform", "uniform", "int", "choice", "normal"]), st.lists(_scalars, max_size=3), min_size=1, max_size=2)
_space_values = st.one_of(_values, st.dictionaries(_config_keys, st.one_of(_values, st.lists(_scalars, max_size=4), _distributions), max_size=3))
_spaces = st.dictionaries(st.sampled_from([*SPACE_KEYS, "bogus"]), _space_values, max_size=7)


def _one_line(e: BaseException) -> None:
    text = str(e)
    assert text and "\n" not in text and "Traceback" not in text, repr(text)


# --------------------------------------------------------------------------- the space-file parser


@given(space=_spaces)
@example(space={"seeds": {"start": 0, "n": 10**9}})
@example(space={"search": "optuna", "num_samples": 10**8, "params": {"lr": {"loguniform": [1e-3, 1e-1]}}})
@example(space={"grid": {"lr": [0.1, 0.2]}, "seeds": {"start": 0, "n": 10**5}})
def test_a_space_mapping_is_a_space_or_one_line(tmp_path_factory, space):
    folder = tmp_path_factory.mktemp("space")
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(space))
    try:
        loaded = load_space(path)
    except ConfigError as e:
        _one_line(e)
    else:
        assert loaded.size <= rsb_tune.options.MAX_TRIALS
    assert [p.name for p in folder.iterdir()] == ["s.yaml"]  # nothing written


@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
@example(data=b"recipe: A3\ngrid:\n  lr: " + b"[" * 600 + b"]" * 600 + b"\n")  # a RecursionError before
@example(data=b"\xff\xfe\x00\x01grid: {}")  # a UnicodeDecodeError before
@example(data=b"grid: {lr: [1, 2]}\ngrid: {lr: [3]}\n")  # a key given twice
@example(data=b"a: &x [*x]")  # a recursive alias
@example(data=b"\x1f")  # found here: yaml's reader error spans two lines
def test_any_bytes_as_a_space_file_are_a_space_or_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("space") / "s.yaml"
    path.write_bytes(data)
    try:
        load_space(path)
    except ConfigError as e:
        _one_line(e)


# --------------------------------------------------------------------------- the event-log reader

_event_records = st.fixed_dictionaries(
    {"type": st.sampled_from(["result", "error", "restart", "stopped", "abandoned", "other", 3])},
    optional={"epoch": st.one_of(st.integers(-3, 5), _scalars), "status": st.one_of(st.sampled_from(["ok", "running", "error", "diverged"]), _values),
              "val_top1": st.one_of(st.floats(allow_nan=True), _scalars), "final": _scalars, "time": _scalars, "epoch_time_s": _scalars, "error": _values},
)  # fmt: skip
_event_lines = st.one_of(_event_records.map(lambda r: json.dumps(r).encode()), st.binary(max_size=30), _values.map(lambda v: json.dumps(v).encode()))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("fuzz"), "fuzzed", n=2)


@given(lines=st.lists(_event_lines, max_size=8))
@example(lines=[json.dumps({"type": "result", "epoch": "two", "status": "ok"}).encode()])  # a 500 of the whole browser before
@example(lines=[json.dumps({"type": "result", "epoch": 1, "status": ["ok"]}).encode()])  # found here: an unhashable status crashed every status
@example(lines=[b'{"type": "result", "epoch": 1, "val_top1": 1.0, "status": "ok"}', b"\xff\xfe", b'{"type": "result", "epoch": 2, "status": "ok"}'])
def test_an_event_log_is_read_or_reported_damaged(study, lines):
    events = parse_event_lines(lines)
    trial_state(events)
    for n, what in events.damaged:
        assert 1 <= n <= len(lines) and "\n" not in what
    (study.events_dir / "t0000.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    before = sorted(p.name for p in study.dir.rglob("*"))
    status = read_status(study)  # the status, the tables and the browser share this reader
    status.lines()
    json.dumps(status.as_dict(), default=str)
    from rsb_tune.store.tables import build_tables

    build_tables(study)
    assert sorted(p.name for p in study.dir.rglob("*")) == before  # reading writes nothing


# --------------------------------------------------------------------------- the manifest reader

_manifests = st.dictionaries(
    st.sampled_from(["kind", "metric", "mode", "params", "num_samples", "search", "started_at", "ended_at", "stopping", "recipe", "format", "data_sizes", "space_file", "name"]),
    _values, max_size=8,
).map(lambda m: {"kind": "seeds", **m})  # fmt: skip


@given(meta=_manifests)
@example(meta={"kind": "seeds", "metric": ["val_top1"], "mode": {"a": 1}})
@example(meta={"kind": "seeds", "stopping": {"stopped": True, "rule": None}, "num_samples": "many"})  # found here: a KeyError
@example(meta={"kind": "seeds", "stopping": ["not", "a", "mapping"]})
@example(meta={"kind": "seeds", "format": 99})  # a newer version's study
def test_a_manifest_is_read_or_the_study_is_damaged(study, meta):
    study.meta_path.write_text(yaml.safe_dump(meta))
    status = read_status(study)
    status.lines()
    json.dumps(status.as_dict(), default=str)
    assert {s.name for s in rsb_tune.list_studies(study.storage)} == {"fuzzed"}


@given(data=st.binary(max_size=200))
@example(data=b"kind: seeds\nx: " + b"[" * 2000 + b"]" * 2000)
@example(data=b"kind: seeds\nstarted_at: 2026-11-30 10:00:00\n")
@example(data=b"kind: seeds\n\x1f")  # found by the space-file test: yaml's reader error spans two lines
def test_any_bytes_as_a_manifest_are_a_mapping_or_one_line(data):
    try:
        meta = parse_meta(data, "study.yaml")
    except UserError as e:
        _one_line(e)
    else:
        json.dumps(meta)  # timestamps as the text written, not datetimes


# --------------------------------------------------------------------------- the command line

_flags = st.sampled_from(["--n", "--recipe", "--seed-start", "--name", "--storage", "--epochs", "--set", "--model", "--pack", "--max-trials", "--until", "--level", "--metric", "--method", "--cpus-per-trial", "--max-concurrent", "--executor", "--space", "--batch-size", "--data", "--dataset", "--out", "--delta", "--vs-set", "--tracking"])
_words = st.one_of(
    st.sampled_from(["0", "1", "-1", "3", "10000000000", "A2", "A9", "lamb_bce", "nope", "", " ", "lr=abc", "epochs=0", "halfwidth<=0.3", "x\n", "nl\n", "1e400", "nan", "local", "auto", "../x", "/"]),
    st.text(max_size=8),
)  # fmt: skip
_argvs = st.tuples(st.sampled_from(["seeds", "grid", "ab", "status", "report", "compare", "resume", "plan-seeds", "recipes"]), st.lists(st.one_of(_flags, _words), max_size=7))


@_scaled(25)
@given(argv=_argvs)
@example(argv=("seeds", ["--n", "10000000000"]))
@example(argv=("seeds", ["--n", "1", "--name", "nl\n"]))
@example(argv=("seeds", ["--n", "1", "--storage", ""]))
@example(argv=("grid", ["--space", "/"]))
@example(argv=("seeds", ["--n", "x"]))  # argparse's usage and error: two lines before
@example(argv=("status", []))
def test_the_command_line_answers_bad_input_with_one_line_and_writes_nothing(tmp_path_factory, argv):
    from rsb_tune.cli import main

    cwd = tmp_path_factory.mktemp("cli")
    command, rest = argv
    if "\x00" in "".join(rest):
        return  # no process can be given a NUL in its arguments
    rest = [*rest, "--storage", str(cwd / "storage")] if command != "recipes" else rest
    if command in ("seeds", "grid", "ab"):
        rest.append("--dry-run")  # nothing may run: a valid plan is only described
    err, out = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main([command, *rest])
            except SystemExit as e:  # argparse's own refusals, worded on one line too
                code = e.code
    finally:
        os.chdir(old)
    assert code in (0, 2), (code, err.getvalue())
    assert "Traceback" not in err.getvalue()
    if code == 2:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("rsb-tune") and ": error: " in lines[0], err.getvalue()
    assert [p.name for p in cwd.iterdir()] == [], list(cwd.iterdir())  # nothing written
