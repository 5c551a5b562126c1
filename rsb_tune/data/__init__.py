"""The data a trial trains on: the types and the data keys of a config (:mod:`.types`), the
registry of datasets by name and loading a study's data once (:mod:`.registry`), and the
readers of local files (:mod:`.readers`). Nothing here knows about plans, studies or Ray."""
