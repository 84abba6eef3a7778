"""Options that change how the step computes, not what: rematerialisation (same numbers) and bf16
compute with float32 parameters (close numbers)."""

import numpy as np
import pytest

from dense_jax.train import train_and_evaluate
from tests.train.conftest import losses_by_step, tiny_config

pytestmark = pytest.mark.slow


def test_remat_and_bf16(tmp_path):
  base = dict(num_devices=1, mesh_shape=(1, 1), total_steps=4, eval_every=4, checkpoint_every=4)
  ref = losses_by_step(_run(tmp_path / "f32", base))
  # Recomputing the activations in the backward pass is the same arithmetic: equal losses.
  remat = losses_by_step(_run(tmp_path / "remat", dict(base, **{"model.remat": True})))
  np.testing.assert_allclose(list(remat.values()), list(ref.values()), rtol=1e-6)
  # bf16 activations (8-bit mantissa, ~4e-3 relative rounding) with float32 parameters, optimizer
  # state and loss: the first losses agree to a few percent, and training still moves the loss.
  workdir = _run(tmp_path / "bf16", dict(base, compute_dtype="bfloat16"))
  bf16 = losses_by_step(workdir)
  np.testing.assert_allclose(list(bf16.values()), list(ref.values()), rtol=5e-2)
  assert all(np.isfinite(list(bf16.values())))


def _run(workdir, overrides):
  final = train_and_evaluate(tiny_config(**overrides), workdir)
  assert final["step"] == 4
  return workdir
