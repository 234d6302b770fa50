"""Shared pieces of the two VAE experiments' tests (not collected).

tests/vae_test.py and tests/discrete_vae_test.py train tiny runs the same
way and check the same promises of :mod:`experiments.common.vae`: a killed
run resumes bit for bit without compiling anew, a workdir that holds
another run is refused, and a bad flag fails before any training. Imported
as ``from tests import vae_checks``; the name does not end in ``_test``.
"""

import os
from unittest import mock

import numpy as np

from experiments.common import config as config_lib
from tests.workdirs import class_tempdir
from tests.workdirs import drop_time
from tests.workdirs import leaves
from tests.workdirs import tempdir


def tiny_config(config, **overrides):
  """`config` shrunk to a few steps of small batches, then `overrides`."""
  config.num_steps = 6
  config.log_every = 2
  config.checkpoint_every = 4
  config.batch_size = 8
  config.num_eval_samples = 2
  config.num_variance_replicates = 3
  config.variance_batch_size = 8
  config.num_display = 3
  config.update(overrides)
  return config


def assert_fails_before_training(testcase, experiment, train_lib, config, msg):
  """`experiment.run(config)` raises ConfigError `msg`, before any step.

  Nothing is recorded either: a corrected config may use the same workdir.
  """
  workdir = os.path.join(tempdir(testcase), "run")
  with mock.patch.object(train_lib, "train_step") as step:
    with testcase.assertRaisesRegex(config_lib.ConfigError, msg):
      experiment.run(config, workdir)
  step.assert_not_called()
  testcase.assertFalse(os.path.exists(workdir))


class RunChecks:
  """Checks of a shared tiny run, mixed into an absltest TestCase.

  Its setUpClass trains ``cls.result = experiment.run(cls.config,
  cls.workdir)`` once, with the TestCase's class attributes:

  * ``experiment``: the experiment package (its ``run``);
  * ``estimators``: the shared run's ``config.estimator``;
  * ``train_lib``: its ``train`` module (``train_step`` is wrapped);
  * ``make_config``: ``**overrides -> tiny config``;
  * ``resume_estimator``: one of the shared run's estimators, retrained
    with a kill and a resume;
  * ``trained(result, name)``: what the run of `name` ends with (the
    parameters, and what else the state carries).
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = class_tempdir(cls)
    cls.config = cls.make_config(estimator=cls.estimators)
    cls.result = cls.experiment.run(cls.config, cls.workdir)

  def test_resume_after_kill_is_bitwise_identical(self):
    name = self.resume_estimator
    config = self.make_config(estimator=name)
    workdir = tempdir(self)
    # "Kill" after step 5: the checkpoint of step 4 survives, step 5 is lost.
    result = self.experiment.run(config, workdir, stop_after_step=5)
    self.assertIsNone(result["metrics"])
    self.assertFalse(os.path.exists(os.path.join(workdir, "metrics.json")))
    train_step = self.train_lib.train_step
    compiled = train_step._cache_size()
    with mock.patch.object(
      self.train_lib, "train_step", wraps=train_step
    ) as step:
      resumed = self.experiment.run(config, workdir)
    # Resumed from step 4: one warm-up call plus steps 5 and 6 (a fresh run
    # would make 1 + 6 calls), and nothing new was compiled.
    self.assertEqual(step.call_count, 3)
    self.assertEqual(train_step._cache_size(), compiled)

    # The shared run trained `name` uninterrupted from the same
    # initialization and keys.
    for a, b in zip(
      leaves(self.trained(resumed, name)),
      leaves(self.trained(self.result, name)),
      strict=True,
    ):
      np.testing.assert_array_equal(a, b)
    got, want = resumed["metrics"], self.result["metrics"]
    self.assertEqual(
      drop_time(got["history"][name]), drop_time(want["history"][name])
    )
    # The final row too (the discrete VAE's holds its final test bound).
    self.assertEqual(
      drop_time([got["final"][name]]), drop_time([want["final"][name]])
    )

  def test_refuses_to_resume_under_another_config(self):
    config = self.make_config(
      estimator=self.config.estimator, latent_dim=self.config.latent_dim + 1
    )
    with mock.patch.object(self.train_lib, "train_step") as step:
      with self.assertRaisesRegex(
        config_lib.ConfigError, "different config.*latent_dim"
      ):
        self.experiment.run(config, self.workdir)
    step.assert_not_called()

  def test_refuses_a_checkpoint_past_num_steps(self):
    config = self.make_config(estimator=self.config.estimator, num_steps=3)
    with self.assertRaisesRegex(
      config_lib.ConfigError, "checkpoint at step 6, past"
    ):
      self.experiment.run(config, self.workdir)
