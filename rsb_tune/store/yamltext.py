"""YAML read with limits, in one place: a study's ``study.yaml`` and the space files.

A file larger than :data:`MAX_BYTES`, not UTF-8 text, or nested deeper than :data:`MAX_DEPTH`
is refused with one line naming it (YAML's own composer recurses, and a 2000-deep value would
escape as a RecursionError). The nesting is measured on the parser's events, which are read
without recursion, before anything is built. A timestamp is read as the text the tool wrote,
not as a datetime (which JSON cannot carry)."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_BYTES", "MAX_DEPTH", "load_yaml", "text_timestamps", "DuplicateKeyError", "unique_key_loader", "read_config_file"]

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


class DuplicateKeyError(ValueError):
    """A mapping of a YAML file names a key twice (YAML itself would keep the last value)."""


def unique_key_loader():
    """yaml's SafeLoader that refuses a key given twice in one mapping, at any nesting level,
    naming the key and both lines (keys brought in by a ``<<`` merge may be overridden)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    mark = key_node.start_mark
                    try:
                        first = seen.setdefault(key, mark)
                    except TypeError:
                        continue  # an unhashable key: refused by the constructor itself
                    if first is not mark:
                        where = f"lines {first.line + 1} and {mark.line + 1}"
                        if first.line == mark.line:
                            where = f"line {mark.line + 1}, columns {first.column + 1} and {mark.column + 1}"
                        raise DuplicateKeyError(f"key {key!r} is given twice in one mapping ({where})")
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_config_file(path, error: type[Exception]) -> Any:
    """A YAML file a user wrote (a space file, a recipe): read with the limits of :func:`load_yaml`
    and a key given twice refused; every problem is one ``error`` naming the file (and the line)."""
    from pathlib import Path

    import yaml

    try:
        return load_yaml(Path(path).read_bytes(), str(path), error, loader=unique_key_loader())
    except DuplicateKeyError as e:
        raise error(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: malformed YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: unreadable ({e})") from None
