"""The data: scikit-learn's breast-cancer set, standardised, with a bias.

The UCI Wisconsin diagnostic breast-cancer set (569 tumours, 30 real
features, label 1 for benign) ships inside scikit-learn
(``sklearn.datasets.load_breast_cancer``), so the experiment needs no
download. :func:`load_breast_cancer` splits it with a seeded permutation,
standardises every feature with the *training* mean and standard deviation
(the test set sees no statistic of its own) and appends a column of ones, the
bias: 31 dimensions, as in the paper's Section 8 and DeepMind's reference
code (``mc_gradients``).
"""

from typing import NamedTuple

import numpy as np

NUM_FEATURES = 31  # 30 standardised features and the bias.


class Split(NamedTuple):
  """The train and test sets, float64 NumPy arrays.

  Attributes:
    x_train: ``[n_train, 31]``, the last column all ones.
    y_train: ``[n_train]``, labels in {0, 1}.
    x_test: ``[n_test, 31]``.
    y_test: ``[n_test]``.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


def load_breast_cancer(test_fraction: float = 0.2, seed: int = 0) -> Split:
  """The breast-cancer data, split by `seed`, standardised, with a bias.

  Args:
    test_fraction: fraction of the 569 points held out, in (0, 1).
    seed: seed of the (NumPy, host-side) permutation that splits the data.

  Returns:
    The :class:`Split` (455 train and 114 test points at the default 0.2).
  """
  from sklearn import datasets  # noqa: PLC0415  (only the data need sklearn)

  bunch = datasets.load_breast_cancer()
  features = np.asarray(bunch.data, np.float64)  # [569, 30]
  labels = np.asarray(bunch.target, np.float64)  # [569]
  permutation = np.random.default_rng(seed).permutation(len(labels))
  num_test = int(round(test_fraction * len(labels)))
  test, train = np.split(permutation, [num_test])
  mean = features[train].mean(axis=0)
  std = features[train].std(axis=0)

  def prepare(index):
    x = (features[index] - mean) / std
    return np.concatenate([x, np.ones((len(index), 1))], axis=1)

  return Split(prepare(train), labels[train], prepare(test), labels[test])
