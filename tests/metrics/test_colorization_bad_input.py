"""Bad input to ab_auc: NaN / inf predictions (or ground truth) at valid pixels are our own ValueError
naming the argument and the pixel; invalid pixels may hold anything; under jit a NaN pixel is a miss."""

import chex
import jax
import numpy as np
import pytest

from dense_jax.metrics import colorization

GT = np.zeros((1, 2, 3, 2))


@pytest.mark.parametrize("name, value", [("pred_ab", np.nan), ("pred_ab", np.inf), ("gt_ab", -np.inf)])
def test_non_finite_ab(name, value):
  bad = GT.copy()
  bad[0, 1, 2, 1] = value
  pred, gt = (bad, GT) if name == "pred_ab" else (GT, bad)
  with pytest.raises(ValueError, match=rf"{name}: expected finite ab values at the valid pixels, got NaN or inf "
                                       rf"at 1 of 6 valid pixels \(first at \(b, y, x\) = \(0, 1, 2\)\)"):
    colorization.ab_auc(pred, gt)
  with pytest.raises(ValueError, match=rf"{name}: .* at 1 of 6"):
    colorization.ab_auc_totals(pred, gt)


def test_non_finite_at_invalid_pixels_is_fine_and_jit_counts_nan_as_a_miss():
  pred = GT.copy()
  pred[0, 1, 2] = np.nan
  valid = np.ones((1, 2, 3), bool)
  valid[0, 1, 2] = False
  assert colorization.ab_auc(pred, GT, valid=valid) == pytest.approx(1.0)
  fn = jax.jit(chex.assert_max_traces(lambda p, g: colorization.ab_auc(p, g, max_threshold=10), n=1))
  assert float(fn(pred, GT)) == pytest.approx(5 / 6)   # 5 pixels right, the NaN one above every threshold
