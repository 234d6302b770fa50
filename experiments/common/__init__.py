"""What every rgrad experiment shares: launch, config checks, outputs, plots.

* :mod:`experiments.common.launch`: the absl entry point (``--config``,
  ``--workdir``) and the one-line usage error for a bad config value.
* :mod:`experiments.common.config`: config checks (``ConfigError``).
* :mod:`experiments.common.outputs`: JSON/CSV writing, on process 0 only.
* :mod:`experiments.common.plotting`: the shared plot style.
* :mod:`experiments.common.distributed`: multi-process initialization.
"""
