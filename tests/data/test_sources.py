"""The batch contract's check of `original_size`: (B, 2) ints, >= 1 for the real examples, (0, 0) allowed
on padding."""

import numpy as np
import pytest

from dense_jax.data.sources import check_original_sizes


def test_check_original_sizes():
  out = check_original_sizes(np.asarray([[40, 60], [0, 0]], np.int32), np.asarray([True, False]))
  assert out.dtype == np.int64
  np.testing.assert_array_equal(out, [[40, 60], [0, 0]])
  with pytest.raises(ValueError, match=r"batch\['original_size'\]: expected sizes >= 1"):
    check_original_sizes(np.asarray([[40, 60], [0, 80]]), np.asarray([True, True]))
  with pytest.raises(ValueError, match=r"batch\['original_size'\]: expected \(2, 2\) \(h, w\)"):
    check_original_sizes(np.asarray([[40.0, 60.0], [1.0, 1.0]]), np.asarray([True, True]))
  with pytest.raises(ValueError, match=r"got shape \(2,\)"):
    check_original_sizes(np.asarray([40, 60]), np.asarray([True, True]))
