"""Augmentation: timm's per-sample transforms of the recipes (:mod:`.transforms`), the same
augmentation batched on a whole batch (:mod:`.batched`) and its compiled CPU loop
(:mod:`.kernels`)."""
