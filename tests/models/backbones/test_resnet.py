"""ResNet-50/101 trunk: parameter counts, output stride by dilation, Multi-Grid, frozen batch norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.backbones import ResNet, stage_dilations
from dense_jax.models.flops import param_counts


@pytest.mark.parametrize("depth, expected", [
    # torchvision resnet50 / resnet101 (weights meta num_params 25,557,032 / 44,549,160) minus fc
    # (2048·1000 + 1000 = 2,049,000).
    pytest.param(50, 23_508_032, id="resnet50"),
    pytest.param(101, 42_500_160, id="resnet101"),
])
def test_param_count_matches_torchvision(depth, expected):
  assert param_counts(ResNet(depth), (1, 64, 64, 3))["params"] == expected


@pytest.mark.parametrize("output_stride, expected", [
    # torchvision's replace_stride_with_dilation: the first block of a dilated stage keeps the
    # previous dilation.
    (32, [(1, [1] * 3), (2, [1] * 4), (2, [1] * 6), (2, [1] * 3)]),
    (16, [(1, [1] * 3), (2, [1] * 4), (2, [1] * 6), (1, [1, 2, 2])]),
    (8, [(1, [1] * 3), (2, [1] * 4), (1, [1] + [2] * 5), (1, [2, 4, 4])]),
])
def test_stage_dilations_follow_torchvision(output_stride, expected):
  assert stage_dilations((3, 4, 6, 3), output_stride) == expected


def test_multi_grid_sets_last_stage_rates():
  # DeepLabV3: Multi-Grid (1, 2, 4) at output stride 16 -> rates 2·(1, 2, 4).
  assert stage_dilations((3, 4, 6, 3), 16, (1, 2, 4))[3] == (1, [2, 4, 8])
  assert stage_dilations((3, 4, 6, 3), 8, (1, 2, 4))[3] == (1, [4, 8, 16])


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_shapes(output_stride):
  model = ResNet(50, output_stride=output_stride)
  x = jax.ShapeDtypeStruct((2, 128, 96, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  strides = {"stem": 4, "layer1": 4, "layer2": 8, "layer3": min(16, max(8, output_stride)),
             "layer4": output_stride}
  channels = {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
  for name, s in strides.items():
    assert out[name].shape == (2, 128 // s, 96 // s, channels[name]), name


def test_frozen_bn_uses_running_statistics_in_training():
  model = ResNet(50, width=0.0625, frozen_bn=True)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  v = random_variables(model, x.shape)
  stats = jax.tree.map(lambda s: s + 0.25, v["batch_stats"])  # Non-trivial running statistics.
  v = {**v, "batch_stats": stats}
  train_out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
  eval_out = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x)
  np.testing.assert_allclose(train_out["layer4"], eval_out["layer4"], rtol=1e-5, atol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], stats)


def test_bad_arguments():
  x = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError, match="depth"):
    ResNet(34).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="output_stride"):
    stage_dilations((3, 4, 6, 3), 4)
  with pytest.raises(ValueError, match="multi_grid"):
    stage_dilations((3, 4, 6, 3), 16, (1, 2))
