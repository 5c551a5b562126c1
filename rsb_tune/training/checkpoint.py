"""A trial's checkpoint file (``state.pt``): written and read in this one place.

The file is ``torch.save`` of a dict of tensors, numbers, strings, lists and dicts, and read
back with ``torch.load(weights_only=True)``: a checkpoint cannot run code when it is loaded,
whoever wrote it into a shared study directory or bucket. The only non-tensor objects a
checkpoint needs are NumPy's RNG key (a ``uint32`` array in ``np.random.get_state()``), so
exactly the NumPy globals that rebuild a plain array are allowed (:data:`SAFE_GLOBALS`); an
array of Python objects would still need their classes, which are not.

:func:`check` says, before a resumed trial is scheduled, whether a file is a checkpoint this
version can resume from: complete (every zip member's CRC matches) and free of code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["save", "load", "file_in", "weights_of", "check", "CheckpointRefused", "CheckpointCorrupt", "SAFE_GLOBALS"]


class CheckpointRefused(ValueError):
    """The file holds something other than data (a callable, a class instance): never loaded."""


class CheckpointCorrupt(ValueError):
    """The file is cut short or damaged (a failed upload, a full disk, a truncated copy)."""


def _safe_globals() -> list:
    import numpy as np

    return [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


SAFE_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType")


def save(state: Mapping[str, Any], path: str | Path) -> None:
    import torch

    torch.save(dict(state), path)


def file_in(directory: str | Path, name: str) -> str:
    """The file ``name`` in ``directory``: a path, or an object-store URI whose options (``?...``)
    stay at its end."""
    base, sep, query = str(directory).partition("?") if "://" in str(directory) else (str(directory), "", "")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def _read(path: str | Path):
    """``path``, or for an object-store URI (``s3://BUCKET/KEY?options``, as ``--storage``
    takes them) its bytes read into memory (a trial on any node reads the store itself)."""
    if "://" not in str(path):
        return path
    import io

    import pyarrow.fs

    fs, key = pyarrow.fs.FileSystem.from_uri(str(path))
    with fs.open_input_stream(key) as f:
        return io.BytesIO(f.read())


def load(path: str | Path, *, map_location: str | None = None, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` (a file, or an object-store URI); :class:`CheckpointRefused`
    when it holds anything but data, :class:`CheckpointCorrupt` when it cannot be read whole.
    Both messages are one line."""
    import torch

    try:
        source = _read(path)
    except FileNotFoundError:
        raise CheckpointCorrupt(f"{path}: missing") from None
    except (OSError, ValueError) as e:  # pyarrow: a store that cannot be reached, a bad URI
        raise CheckpointCorrupt(f"{path}: unreadable ({_first_line(e)})") from None
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            state = torch.load(source, weights_only=True, map_location=map_location, mmap=mmap and not hasattr(source, "read"))
    except pickle.UnpicklingError as e:
        what = _first_line(e)
        if "Unsupported global" in what or "weights_only" in what.lower() or "Weights only" in str(e):
            found = _unsafe_globals(str(e))
            raise CheckpointRefused(f"{path}: refused: it holds {found or 'objects that are not data'}, which is not data (a checkpoint is loaded as data only: nothing in it may run)") from None
        raise CheckpointCorrupt(f"{path}: unreadable ({what})") from None
    except FileNotFoundError:
        raise CheckpointCorrupt(f"{path}: missing") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointCorrupt(f"{path}: cut short or damaged ({_first_line(e)})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointCorrupt(f"{path}: not a trial checkpoint (no epoch)")
    return state


def check(path: str | Path) -> None:
    """Raise :class:`CheckpointCorrupt` or :class:`CheckpointRefused` unless ``path`` is a
    whole, data-only checkpoint. Reads the file once (CRCs) and maps its tensors, so even a
    large model's checkpoint costs no memory."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except FileNotFoundError:
        raise CheckpointCorrupt(f"{path}: missing") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointCorrupt(f"{path}: cut short or damaged ({_first_line(e)})") from None
    if bad is not None:
        raise CheckpointCorrupt(f"{path}: cut short or damaged (member {bad} fails its CRC)")
    load(path, map_location="cpu", mmap=True)


def check_on(fs, path: str) -> None:
    """:func:`check` for a checkpoint directory on a pyarrow file system (``fs`` None: local)."""
    from analysis import contract as C

    file = f"{path}/{C.CHECKPOINT_FILE}"
    if fs is None:
        return check(file)
    with tempfile.TemporaryDirectory(prefix="rsb-check-") as d:
        local = os.path.join(d, C.CHECKPOINT_FILE)
        try:
            with fs.open_input_stream(file) as src, open(local, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        except OSError as e:
            raise CheckpointCorrupt(f"{file}: unreadable ({_first_line(e)})") from None
        try:
            check(local)
        except (CheckpointCorrupt, CheckpointRefused) as e:
            raise type(e)(str(e).replace(local, file)) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _unsafe_globals(text: str) -> str:
    """The globals and classes torch's weights-only unpickler named (``GLOBAL posix.system``,
    ``but got <class 'numpy.dtypes.ObjectDType'>``)."""
    import re

    found = dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", text))
    found = dict.fromkeys(a or b for a, b in found)
    return ", ".join(found)


def weights_of(state: Mapping[str, Any], trial_id: str) -> dict[str, Any]:
    """The model weights of ``trial_id`` in a checkpoint ``state`` (loaded as data only, by
    :func:`load`): its ``model``, or its slice of a pack's stacked
    ``model`` (``pack``: the trials, in the order of the leading dimension)."""
    model = state["model"]
    if "pack" not in state:
        return dict(model)
    members = list(state["pack"])
    if trial_id not in members:
        raise ValueError(f"checkpoint of pack {members} holds no weights of {trial_id}")
    i = members.index(trial_id)
    return {name: tensor[i] for name, tensor in model.items()}
