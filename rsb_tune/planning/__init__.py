"""Planning: from recipes (:mod:`.recipes`), space files (:mod:`.space`) and the command line
to every trial's resolved config, through one precedence chain (:mod:`.config`: each key's
type, default and scope), validated (:mod:`.validate`), packs of seeds decided (:mod:`.packs`).
Planning writes nothing and runs nothing."""
