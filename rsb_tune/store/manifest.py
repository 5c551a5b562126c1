"""The typed view of a study's manifest (``study.yaml``): what every reader needs of it,
resolved once. The metric and its direction are decided here and nowhere else: a manifest
without ``mode`` (format 0) gets the metric's direction (:func:`analysis.contract.default_mode`),
never a reader's own default."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from analysis import contract as C

__all__ = ["Manifest", "data_configs", "data_sizes"]


def _text(value: Any) -> str | None:
    """A manifest's scalar as the text the tool wrote (YAML may have read a timestamp as a datetime)."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _names(value: Any) -> str | None:
    """A study-level name, or the names of a key varied between trials ("A2, A3")."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """study.yaml, typed: the study's kind, recipe, metric and direction, its search and its
    sequential rule; ``raw`` keeps the whole mapping."""

    kind: str
    recipe: str | None  # the study's recipe, or the recipes of its trials ("A2, A3")
    metric: str
    mode: str
    search: str | None
    num_samples: int | None
    stopping: Mapping[str, Any] | None
    started_at: str | None
    ended_at: str | None
    format: int
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)
    seeds_per_sample: int = 1  # a search's seeds per sampled point: num_samples x this many trials

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> "Manifest":
        metric = str(meta.get("metric") or C.DEFAULT_METRIC)
        mode = meta.get("mode")
        if mode not in ("max", "min"):
            mode = C.default_mode(metric)
        try:
            num_samples = int(meta["num_samples"]) if meta.get("num_samples") else None
        except (TypeError, ValueError):
            num_samples = None
        try:
            seeds_per_sample = max(int(meta.get("seeds_per_sample") or 1), 1)
        except (TypeError, ValueError):
            seeds_per_sample = 1
        stopping = meta.get("stopping")
        return cls(
            kind=str(meta.get("kind")),
            recipe=_names(meta.get("recipe")),
            metric=metric,
            mode=mode,
            search=meta.get("search"),
            num_samples=num_samples,
            stopping=dict(stopping) if isinstance(stopping, Mapping) else None,
            started_at=_text(meta.get("started_at")),
            ended_at=_text(meta.get("ended_at")),
            format=meta.get("format", 0) if isinstance(meta.get("format", 0), int) else -1,
            raw=dict(meta),
            seeds_per_sample=seeds_per_sample,
        )


def data_configs(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The data specs a study recorded (its base config with each spec's data keys), for
    :func:`rsb_tune.data.registry.load_study_data`; a study written before ``data_specs``: its base."""
    base = dict(meta.get("base_config") or {})
    return [{**base, **record["spec"]} for record in meta.get("data_specs") or []] or [base]


def data_sizes(meta: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, int]:
    """The split sizes of the data the trial of ``config`` trained on."""
    from rsb_tune.data.types import data_spec
    from rsb_tune.store.directory import json_default

    spec = json.loads(json.dumps(dict(data_spec(config)), default=json_default))
    for record in meta.get("data_specs") or []:
        if record["spec"] == spec:
            return dict(record["sizes"])
    return dict(meta.get("data_sizes") or {})
