"""The U-Net experiment file: its configs pass the trainer's validation and build the model."""

import jax
import jax.numpy as jnp
import pytest

from dense_jax.models import get_model
from dense_jax.train import config as config_lib
from experiments import sweep as sweep_lib
from experiments import unet_dense_shapes


@pytest.mark.parametrize("arg", [None, "quick", "quick,width=8,up=bilinear", "quick,padding=valid,depth=2"])
def test_configs_resolve(arg):
  config = config_lib.resolve(unet_dense_shapes.get_config(arg))
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = get_model(config.model.name, num_classes=9, **kwargs)
  side = 64 if config.model.padding == "same" else 92   # 92: a size the depth-2 valid U-Net accepts
  jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, side, side, 3))))


def test_quick_mode_is_small():
  config = unet_dense_shapes.get_config("quick")
  assert config.dataset.name == "dense_shapes/small_64" and config.model.width <= 16
  assert config.total_steps <= 1000


def test_sweep_declares_runs():
  runs = sweep_lib.collect_runs("experiments/unet_dense_shapes.py:quick")
  assert len(runs) == 4 and all("model.up" in r.overrides for r in runs)
