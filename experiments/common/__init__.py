"""What every rgrad experiment shares: launch, config checks, outputs, plots.

* :mod:`experiments.common.launch`: the absl entry point (``--config``,
  ``--workdir``) and the one-line usage error for a bad config value.
* :mod:`experiments.common.config`: config checks (``ConfigError``).
* :mod:`experiments.common.outputs`: JSON/CSV writing, on process 0 only.
* :mod:`experiments.common.plotting`: the shared plot style.
* :mod:`experiments.common.distributed`: multi-process initialization.
* :mod:`experiments.common.vae` and :mod:`experiments.common.vae_plots`:
  what the Gaussian and the discrete VAE share (training step pieces, the
  per-estimator runs, config checks, metrics files; the figures).
"""
