"""Sequential studies: the stopping rule and its decision (:mod:`.rule`), and the engine
that runs seeds until the rule decides, or A against B on the same seeds (:mod:`.engine`).
The statistics behind them are :mod:`analysis.sequential`'s."""
