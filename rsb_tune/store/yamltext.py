"""YAML read with limits, in one place: a study's ``study.yaml`` and the space files.

A file larger than :data:`MAX_BYTES`, not UTF-8 text, or nested deeper than :data:`MAX_DEPTH`
is refused with one line naming it (YAML's own composer recurses, and a 2000-deep value would
escape as a RecursionError). The nesting is measured on the parser's events, which are read
without recursion, before anything is built. A timestamp is read as the text the tool wrote,
not as a datetime (which JSON cannot carry)."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_BYTES", "MAX_DEPTH", "load_yaml", "text_timestamps"]

MAX_BYTES = 4 << 20  # a study.yaml is a few kB, a space file less
MAX_DEPTH = 100


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


def load_yaml(data: bytes | str, where: str, error: type[Exception], loader: type | None = None) -> Any:
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
    for event in yaml.parse(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
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
