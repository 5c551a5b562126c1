"""``evals.parquet``: a study's trials re-scored at other settings and on other test sets
(``rsb-tune eval``), read and written in this one place.

One row per trial x setting x test set, keyed by :data:`analysis.contract.EVAL_KEY`
(``trial_id``, ``test_set``, ``test_img_size``, ``crop_pct``). Columns: the key, the trial's
seeds, ``trained`` (the trial's own setting: its ``test_img_size`` and ``crop_pct``),
``top1``/``top5``/``loss`` (loss NaN for a multi-label set), ``n_examples``, ``correct`` (the
per-example correctness as :func:`analysis.contract.pack_correct` writes it: base64 of packed
bits, :func:`analysis.contract.unpack_correct` with ``n_examples`` reads it), ``source`` (the
test set's files), ``eval_time_s``, ``runtime_device``, ``runtime_threads``, ``evaluated_at``.

Rows are merged, never appended: :func:`add_rows` replaces a row of the same key, so an
evaluation resumed after a kill never writes a row twice, and the file is replaced atomically
(and, for an object-store study, uploaded) after each trial, so a kill loses at most the trial
being evaluated.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from analysis import contract as C
from rsb_tune.errors import StudyError
from rsb_tune.store.directory import StudyDir

__all__ = ["EVAL_COLUMNS", "evals_path", "read_evals", "add_rows", "keys_of", "row_key"]

EVAL_COLUMNS = (
    *C.EVAL_KEY, *C.SEED_COLUMNS, "trained", "top1", "top5", "loss", "n_examples", "correct",
    "source", "eval_time_s", "runtime_device", "runtime_threads", "evaluated_at",
)  # fmt: skip


def evals_path(study: StudyDir):
    return study.dir / C.EVALS


def row_key(row: Mapping[str, Any]) -> tuple:
    """A row's key: (trial id, test set, test size, crop ratio), numbers normalised."""
    return (str(row["trial_id"]), str(row["test_set"]), int(row["test_img_size"]), round(float(row["crop_pct"]), 6))


def read_evals(study: StudyDir):
    """The study's evals table (an empty one with :data:`EVAL_COLUMNS` when none was written);
    a file that cannot be read is a :class:`StudyError` naming it."""
    import pandas as pd

    path = evals_path(study)
    if not path.exists():
        return pd.DataFrame(columns=list(EVAL_COLUMNS))
    real = study.confined(path)  # a link leading out of the study is refused, never read
    try:
        with open(real, "rb") as f:  # one open file: a table replaced meanwhile is read whole
            return pd.read_parquet(f)
    except Exception as e:  # pyarrow raises several unrelated types for a corrupt file
        raise StudyError(f"{path}: cannot read it ({type(e).__name__}: {e}); delete it to evaluate again") from None


def keys_of(table) -> list[tuple]:
    """The :func:`row_key` of each row of ``table``, in order (column by column, not row dicts)."""
    cols = [table[k].tolist() for k in C.EVAL_KEY]
    return [row_key(dict(zip(C.EVAL_KEY, values))) for values in zip(*cols)]


def add_rows(study: StudyDir, rows: Iterable[Mapping[str, Any]], table=None):
    """Merge ``rows`` into ``evals.parquet`` (a row of the same key is replaced) and replace the
    file atomically (and upload it, for an object-store study); returns the table written.
    ``table``: the file's table as the previous call returned it (under the study's lock:
    nobody else writes it), which spares reading it back; else it is read."""
    import pandas as pd

    from rsb_tune.store.tables import _atomic_parquet

    new = pd.DataFrame([{k: r.get(k) for k in EVAL_COLUMNS} for r in rows], columns=list(EVAL_COLUMNS))
    old = read_evals(study) if table is None else table
    if not old.empty:
        fresh = set(keys_of(new))
        old = old[[k not in fresh for k in keys_of(old)]]
    table = pd.concat([t for t in (old, new) if not t.empty], ignore_index=True) if not (old.empty and new.empty) else new
    table = table.sort_values(list(C.EVAL_KEY), kind="stable").reset_index(drop=True)
    _atomic_parquet(table, evals_path(study))
    study.sync()
    return table
