"""The data of the model experiments: binarized images, train and test.

:func:`load_digits_binarized` reads scikit-learn's 8x8 digits, which ship
with scikit-learn, so the experiments need no download.
:func:`load_npz_binarized` reads a NumPy ``.npz`` archive with ``x_train``
and ``x_test`` arrays, e.g. Keras' ``mnist.npz``, for a user who has MNIST
(28x28, ``dim = 784``) at hand. Both return ``(train, test)`` float32 arrays
``[n, dim]`` of 0s and 1s.
"""

import os

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


def load_npz_binarized(
  path: str, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
  """Images from an ``.npz`` with ``x_train`` and ``x_test``, binarized.

  The archive's own split is kept (MNIST's 60000/10000). Integer images are
  scaled by their dtype's maximum (255 for ``uint8``), float images are
  taken to lie in [0, 1] already; every image is flattened.

  Args:
    path: the ``.npz`` file (Keras' ``mnist.npz`` has this layout).
    threshold: pixels with scaled intensity > threshold become 1.

  Returns:
    `(train, test)`, float32 arrays `[n_train, dim]` and `[n_test, dim]`.

  Raises:
    ValueError: a missing file or key, or images outside [0, 1] after
      scaling (naming the path and the key).
  """
  if not os.path.isfile(path):
    raise ValueError(f"data_path {path!r} is not a file.")
  with np.load(path) as archive:
    missing = [k for k in ("x_train", "x_test") if k not in archive.files]
    if missing:
      raise ValueError(
        f"data_path {path!r} lacks the array(s) {', '.join(missing)} (it has "
        f"{', '.join(archive.files) or 'none'})."
      )
    split = []
    for name in ("x_train", "x_test"):
      images = np.asarray(archive[name])
      if np.issubdtype(images.dtype, np.integer):
        images = images / np.iinfo(images.dtype).max
      images = images.reshape(len(images), -1).astype(np.float64)
      if images.size == 0 or images.min() < 0 or images.max() > 1:
        raise ValueError(
          f"{name} in {path!r} must be non-empty images in [0, 1] (or "
          "unsigned integers)."
        )
      split.append((images > threshold).astype(np.float32))
  train, test = split
  if train.shape[1] != test.shape[1]:
    raise ValueError(
      f"x_train and x_test in {path!r} have different image sizes: "
      f"{train.shape[1]} and {test.shape[1]}."
    )
  return train, test
