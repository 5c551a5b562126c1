"""A study's files read safely, in one place for the analysis and the engine (which reads its
studies through :mod:`rsb_tune.store`, itself built on this module: the analysis is the lower layer).

Confinement: every file of a study is opened through :func:`confined`, which resolves it (every
symlink followed) and refuses one that leads out of the study directory with one line naming it,
so a planted link (``plan.json`` or ``trials.parquet`` pointing at a file elsewhere) is a damaged
study, never a read of the planted file.

YAML with limits: a file larger than :data:`MAX_BYTES`, not UTF-8 text, nested deeper than
:data:`MAX_DEPTH` or holding more than :data:`MAX_NODES` values is refused with one line naming it (YAML's own composer recurses, and a
2000-deep value would escape as a RecursionError). The nesting is measured on the parser's
events, which are read without recursion, before anything is built. A timestamp is read as the
text the tool wrote, not as a datetime (which JSON cannot carry).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from analysis.contract import StudyError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "confined", "read_confined", "load_yaml", "text_timestamps", "yaml_problem"]

MAX_BYTES = 4 << 20  # a study.yaml is a few kB, a space file less
MAX_DEPTH = 100
MAX_NODES = 100_000  # values and collections in one file: a space's axes, a manifest, are far fewer


def confined(path: str | os.PathLike, root: str | os.PathLike, what: str = "the study directory") -> Path:
    """``path`` resolved, when it stays inside the directory ``root`` (``what``, for the message)
    with every symlink followed; else a :class:`StudyError` naming ``path`` (a link out of it is
    refused, not followed)."""
    path = Path(path)
    try:
        real = path.resolve()
        inside = real.is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL
        raise StudyError(f"{path}: unreadable (a symlink loop or an unusable path)") from None
    if not inside:
        raise StudyError(f"{path}: a link leading out of {what}; refused")
    return real


def read_confined(path: str | os.PathLike, root: str | os.PathLike) -> bytes:
    """The bytes of ``path`` (:func:`confined` to ``root``); OSErrors (a missing file) propagate."""
    return confined(path, root).read_bytes()


def yaml_problem(e: Exception) -> str:
    """What a YAMLError says is wrong, on one line (a reader's error, a control character in
    the file, has no ``problem`` and spans lines)."""
    text = getattr(e, "problem", None) or str(e) or type(e).__name__
    return " ".join(str(text).split()[:40])


def text_timestamps(loader: type) -> type:
    """A subclass of the yaml ``loader`` that keeps timestamps as their text."""
    import yaml

    class TextTimestamps(loader):
        pass

    TextTimestamps.add_constructor("tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str)
    return TextTimestamps


_LOADER: type | None = None


def _default_loader() -> type:
    global _LOADER
    if _LOADER is None:
        import yaml

        _LOADER = text_timestamps(getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: ~50x faster
    return _LOADER


def load_yaml(data: bytes | str, where: str, error: type[Exception] = StudyError, loader: type | None = None) -> Any:
    """The YAML document of ``data`` (the bytes or text of the file ``where``), loaded with
    ``loader`` (default: yaml's safe loader, timestamps as text). A file over the limits is an
    ``error`` naming ``where``; malformed YAML raises yaml's own ``YAMLError`` (the callers word it)."""
    import yaml

    if len(data) > MAX_BYTES:
        raise error(f"{where}: too large ({len(data)} bytes; a YAML file here is at most {MAX_BYTES >> 20} MiB)")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{where}: not UTF-8 text (a binary file? byte {e.start} cannot be decoded)") from None
    loader = loader or _default_loader()
    depth = 0
    for nodes, event in enumerate(yaml.parse(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))):
        if nodes > MAX_NODES:  # a million-value axis would take minutes to build and check
            raise error(f"{where}: more than {MAX_NODES:,} values (line {event.start_mark.line + 1 if event.start_mark else '?'})")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise error(f"{where}: nested deeper than {MAX_DEPTH} levels (line {line})")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    try:
        return yaml.load(data, Loader=loader)  # noqa: S506 - a safe loader
    except RecursionError:  # aliases can nest what the events do not show
        raise error(f"{where}: nested too deeply") from None
