"""Adding a task is adding code outside `dense_jax/train/`: a throwaway task (each pixel predicts its
image's mean colour) and a model with a head for it, both defined in the experiment file itself, train
together with semantic segmentation through the ordinary config and command line."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.train.conftest import _REGISTER, REPO_ROOT, read_metrics, tiny_config

# What a researcher would put in an experiment file (or in dense_jax/tasks/ + dense_jax/models/).
_TASK_AND_MODEL = '''
import flax.linen as nn
import jax.numpy as jnp
from dense_jax.models import register_model
from dense_jax.models.unet import UNet
from dense_jax.tasks import Task, example_mask, register_task


@register_task("mean_colour")
class MeanColourTask(Task):
  """Every pixel regresses its image's mean RGB colour; loss = mean squared error over real pixels."""
  batch_keys = ()          # reads only the image

  def _errors(self, outputs, batch):
    pred = outputs[self.name].astype(jnp.float32)                          # (B, h, w, 3)
    target = jnp.mean(batch["image"], axis=(1, 2), keepdims=True)          # (B, 1, 1, 3)
    real = example_mask(batch, pred.shape[0]).astype(jnp.float32)[:, None, None, None]
    return jnp.sum((pred - target) ** 2 * real), jnp.sum(real) * pred.shape[1] * pred.shape[2] * 3

  def loss(self, outputs, batch):
    sq, count = self._errors(outputs, batch)
    return sq / jnp.maximum(count, 1.0), {}

  def init(self):
    return {"sq": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}

  def update(self, acc, outputs, batch):
    sq, count = self._errors(outputs, batch)
    return {"sq": acc["sq"] + sq, "count": acc["count"] + count}

  def result(self, acc):
    return {"mean_colour/mse": float(acc["sq"] / max(float(acc["count"]), 1.0))}


@register_model("unet_with_colour")
class UNetWithColour(nn.Module):
  """The U-Net with 3 more output channels: {'semantic': logits, 'mean_colour': RGB}."""
  num_classes: int = 2
  width: int = 4

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    out = UNet(num_classes=self.num_classes + 3, width=self.width, depth=1, name="unet")(x, train=train)
    out = out["semantic"]
    return {"semantic": out[..., :self.num_classes], "mean_colour": out[..., self.num_classes:]}
'''


@pytest.mark.slow
def test_a_task_defined_outside_the_package_trains_with_semantic_through_the_cli(tmp_path):
  config = tiny_config(total_steps=8, eval_every=8, checkpoint_every=8, log_every=4, num_devices=1,
                       mesh_shape=(1, 1), model=dict(name="unet_with_colour", width=4),
                       tasks={"semantic": {"weight": 1.0}, "mean_colour": {"weight": 2.0}})
  path = tmp_path / "colour_experiment.py"
  path.write_text(_REGISTER + _TASK_AND_MODEL + textwrap.dedent(f"""
      import json
      import ml_collections

      def get_config(arg=None):
        return ml_collections.ConfigDict(json.loads({config.to_json()!r}))
      """))
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
  proc = subprocess.run([sys.executable, "-m", "dense_jax.train", "--config", str(path), "--workdir", str(workdir)],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  records = read_metrics(workdir)
  last = records[-1]
  assert last["step"] == 8
  # Both tasks' losses are logged, and the total is their weighted sum (step 8's values).
  step8 = next(r for r in records if r["step"] == 8 and "loss/semantic" in r)
  for key in ("loss/semantic", "loss/mean_colour", "train_pixel_accuracy", "val/miou", "val/mean_colour/mse"):
    assert key in step8 and np.isfinite(step8[key]), key
  # `loss` (like each `loss/<task>`, the mean over the logging interval) is the weighted sum.
  assert step8["loss"] == pytest.approx(step8["loss/semantic"] + 2.0 * step8["loss/mean_colour"], rel=1e-5)
  # The colour head learns (its loss falls between the two logged steps).
  first = next(r for r in records if "loss/mean_colour" in r)
  assert first["step"] == 4
  assert step8["loss/mean_colour"] < first["loss/mean_colour"]
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["tasks"]["mean_colour"]["weight"] == 2.0
  # Nothing under dense_jax/train/ knows the task: the name appears in no file there.
  for file in (REPO_ROOT / "dense_jax" / "train").glob("*.py"):
    assert "mean_colour" not in file.read_text(), file
