"""Running a planned study: its life without Ray (:mod:`.lifecycle`: the manifest, resume
planning, checkpoints, progress, recording what trials report) and Ray Tune as the executor
(:mod:`.ray_executor`, the only module that imports Ray)."""
