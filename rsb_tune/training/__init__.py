"""One trial, framework-free: :func:`.trial.train` trains a timm model under one config and
reports each epoch; packed seeds (:mod:`.packed`), the optimizers (:mod:`.optim` and its
compiled step :mod:`.optim_kernels`), checkpoints (:mod:`.checkpoint`) and models
(:mod:`.models`). No Ray, no study files."""
