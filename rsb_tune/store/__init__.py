"""The study store: what a study *is*, read in one place.

- :mod:`rsb_tune.store.events`: a trial's event log and its one reader (a trial's status);
- :mod:`rsb_tune.store.manifest`: ``study.yaml`` typed, the metric and its direction resolved once;
- :mod:`rsb_tune.store.status`: where a study stands, one function for the CLI, the API, the
  browser, the report and the benchmarks.

The study directory's paths, lock and object-store mirror are :class:`rsb_tune.store.directory.StudyDir`.
"""

from rsb_tune.store.events import damage_line, parse_event_lines, read_events, trial_state
from rsb_tune.store.manifest import Manifest
from rsb_tune.store.status import StudyStatus, damaged_status, stopping_line, study_status

__all__ = ["Manifest", "StudyStatus", "damage_line", "damaged_status", "parse_event_lines", "read_events", "stopping_line", "study_status", "trial_state"]
