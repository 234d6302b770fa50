"""The data: scikit-learn's 8x8 digits, binarized, split into train and test.

The digits ship with scikit-learn, so the experiment needs no download. Any
loader returning `(train, test)` float arrays `[n, dim]` of 0s and 1s can
replace this one (e.g. binarized MNIST, `dim = 784`).
"""

import numpy as np


def load_digits_binarized(
  test_fraction: float = 0.2, seed: int = 0, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
  """sklearn's 8x8 digits, scaled to [0, 1], binarized and split.

  Args:
    test_fraction: fraction of the 1797 images held out, in (0, 1).
    seed: seed of the (NumPy, host-side) permutation that splits the data,
      independent of the experiment's `seed`, so that runs with different
      seeds are evaluated on the same test set.
    threshold: pixels with scaled intensity > threshold become 1.

  Returns:
    `(train, test)`, float32 arrays `[n_train, 64]` and `[n_test, 64]`.
  """
  from sklearn import datasets  # noqa: PLC0415  (only the data need sklearn)

  images = datasets.load_digits().data / 16.0  # [1797, 64], in [0, 1]
  binary = (images > threshold).astype(np.float32)
  permutation = np.random.default_rng(seed).permutation(len(binary))
  num_test = int(round(test_fraction * len(binary)))
  test, train = np.split(binary[permutation], [num_test])
  return train, test
