"""Helpers the loss tests share."""

import jax
import numpy as np


def grad_at_masked(loss_fn, pred, masked):
  """Asserts that `loss_fn`'s gradient at `pred` is finite, exactly 0 where `masked` and nonzero somewhere
  else."""
  g = jax.grad(loss_fn)(pred)
  g = np.asarray(g)
  assert np.all(np.isfinite(g))
  assert not np.any(g[masked]), "masked pixels must get an exactly zero gradient"
  assert np.any(g[~masked]), "valid pixels must get a gradient"
