"""The same run on 1 device and on 8 fake devices gives the same losses and metrics; one compilation.

Tolerance: losses to 2e-5 relative, validation mIoU to 2e-3 absolute. Why not bit-exact: with the batch
split over devices, batch-norm statistics, the loss and the gradients are sums of per-device partial
sums — the same numbers added in a different order, so each reduction differs by ~1 ulp (~1e-7
relative in float32). Eight steps of AdamW carry that to ~1e-6 in the loss (measured: ≤ 5e-7). The
mIoU counts argmax decisions; a logit difference of 1e-6 can only flip a pixel that is a near-tie,
and one pixel of the 16·32·32 evaluated moves an IoU by < 1e-3.
"""

import numpy as np
import pytest

from dense_jax.train import train_and_evaluate
from tests.train.conftest import losses_by_step, tiny_config

pytestmark = pytest.mark.slow

RUNS = {
    "data=8": dict(mesh_shape=(8, 1)),
    "data=4,model=2,fsdp_over_model": dict(mesh_shape=(4, 2), **{"sharding.params": ((".*", "fsdp:model"),)}),
    "data=2,model=4,spatial,fsdp_over_data": dict(
        mesh_shape=(2, 4), **{"sharding.spatial": True, "sharding.params": ((".*", "fsdp:data"),)}),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one_device")
  final = train_and_evaluate(tiny_config(num_devices=1, mesh_shape=(1, 1)), workdir)
  return final, losses_by_step(workdir)


@pytest.mark.parametrize("name", list(RUNS))
def test_same_losses_and_metrics(name, reference, tmp_path):
  ref_final, ref_losses = reference
  final = train_and_evaluate(tiny_config(**RUNS[name]), tmp_path)
  got = losses_by_step(tmp_path)
  assert list(got) == list(ref_losses) == list(range(1, 9))
  np.testing.assert_allclose(list(got.values()), list(ref_losses.values()), rtol=2e-5)
  assert abs(final["val/miou"] - ref_final["val/miou"]) < 2e-3
  # One compilation of the train step for the whole run (evaluations and checkpoints in between).
  assert final["train_step_compilations"] == 1 == ref_final["train_step_compilations"]
