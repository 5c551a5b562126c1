"""YAML read with limits, for the engine: a study's ``study.yaml``, the space files and recipe files.

The loader lives in :mod:`analysis.files` (the lower layer: the analysis reads ``study.yaml``
too, and never imports the engine); this module is the engine's name for it."""

from __future__ import annotations

from typing import Any

from analysis.files import MAX_BYTES, MAX_DEPTH, load_yaml, text_timestamps, yaml_problem

__all__ = ["MAX_BYTES", "MAX_DEPTH", "load_yaml", "text_timestamps", "yaml_problem", "DuplicateKeyError", "unique_key_loader", "read_config_file"]


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
        raise error(f"{path}: malformed YAML{at}: {yaml_problem(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: unreadable ({e})") from None
