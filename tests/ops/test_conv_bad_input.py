"""Bad input to conv2d / conv_transpose2d: integer (or bool) operands are our own ValueError naming the
argument and the dtype, not an XLA type error."""

import numpy as np
import pytest

from dense_jax.ops.conv import conv2d, conv_transpose2d

X = np.zeros((1, 5, 5, 2), np.float32)
W = np.zeros((3, 3, 2, 4), np.float32)


@pytest.mark.parametrize("fn", [conv2d, lambda x, w: conv_transpose2d(x, w, stride=2)])
@pytest.mark.parametrize("which, dtype", [("x", np.int32), ("x", np.uint8), ("w", np.int32), ("x", bool)])
def test_integer_operands(fn, which, dtype):
  x, w = (X.astype(dtype), W) if which == "x" else (X, W.astype(dtype))
  with pytest.raises(ValueError, match=rf"{which}: expected a floating dtype \(float32, bfloat16, \.\.\.\), got "
                                       rf"dtype {np.dtype(dtype).name}; cast it"):
    fn(x, w)


def test_float_operands_still_work():
  assert conv2d(X, W, padding=1).shape == (1, 5, 5, 4)
