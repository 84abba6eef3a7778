"""FCN-32s/16s/8s on VGG16 and torchvision's FCN-ResNet head: crops, parameter counts, shapes,
bilinear upsampler initialisation and bad input (the short run that learns, for every narrow
variant: test_zoo_learns.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.fcn import FCN, crop_offsets
from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model

FAST_KEY = lambda: jax.random.key(0, impl="unsafe_rbg")  # Compiles much faster than threefry.


@pytest.mark.parametrize("stride, expected", [
    # The Caffe reference's Crop layers (voc-fcn*/net.py; offsets derived there by coord_map.py).
    (32, {"final": 19}),
    (16, {"pool4": 5, "final": 27}),
    (8, {"pool4": 5, "pool3": 9, "final": 31}),
])
def test_crop_offsets_match_caffe_reference(stride, expected):
  assert crop_offsets(stride, pad100=True) == expected


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_crop_offsets_without_pad100_are_zero(stride):
  assert set(crop_offsets(stride, pad100=False).values()) == {0}


@pytest.mark.parametrize("name, kwargs, expected", [
    # VGG16 convs 14,714,688 + fc6 102,764,544 + fc7 16,781,312 + score layers + bilinear deconvs (no
    # bias); the paper's Table 1 quotes 134M.
    pytest.param("fcn8s", {}, 134_489_759, id="fcn8s"),
    pytest.param("fcn16s", {}, 134_815_994, id="fcn16s"),
    pytest.param("fcn32s", {}, 136_152_917, id="fcn32s"),  # incl. the 64x64 upsampler (1,806,336)
    pytest.param("fcn32s", {"learn_upsampling": False}, 134_346_581, id="fcn32s_fixed_upsampler"),
    # torchvision: fcn_resnet50 built with aux_loss=False / the COCO_WITH_VOC_LABELS_V1 weights'
    # num_params (with the auxiliary head) 35,322,218; fcn_resnet101's weights: 54,314,346.
    pytest.param("fcn_resnet50", {}, 32_957_013, id="fcn_resnet50"),
    pytest.param("fcn_resnet50", {"aux_classifier": True}, 35_322_218, id="fcn_resnet50_aux"),
    pytest.param("fcn_resnet101", {"aux_classifier": True}, 54_314_346, id="fcn_resnet101_aux"),
])
def test_param_counts(name, kwargs, expected):
  assert param_counts(get_model(name, **kwargs), (1, 224, 224, 3))["params"] == expected


@pytest.mark.parametrize("name", ["fcn8s", "fcn16s", "fcn32s", "fcn_resnet50"])
@pytest.mark.parametrize("shape", [(1, 97, 131, 3), (2, 224, 224, 3)])
def test_full_size_output_at_input_resolution(name, shape):
  model = get_model(name)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["semantic"], variables, x)
  assert out.shape == shape[:3] + (21,)


@pytest.mark.parametrize("name", ["fcn8s_narrow", "fcn16s_narrow", "fcn32s_narrow"])
def test_narrow_forward(name):
  model = get_model(name, num_classes=5)
  x = jax.random.normal(jax.random.key(1), (2, 64, 96, 3))
  y = jax.jit(lambda v, x: model.apply(v, x, train=False)["semantic"])(random_variables(model, x.shape), x)
  assert y.shape == (2, 64, 96, 5) and bool(jnp.all(jnp.isfinite(y)))


def test_pad100_forward_on_an_odd_size():
  """The Caffe geometry (pad 100, ceil pooling, crops 5/9/31) runs on any size, not just shapes."""
  model = FCN(num_classes=4, stride=8, width=0.0625, pad100=True)
  x = jax.random.normal(jax.random.key(1), (1, 37, 45, 3))
  y = jax.jit(lambda v, x: model.apply(v, x, train=False)["semantic"])(random_variables(model, x.shape), x)
  assert y.shape == (1, 37, 45, 4) and bool(jnp.all(jnp.isfinite(y)))


def test_upsamplers_start_bilinear():
  model = FCN(num_classes=3, stride=8, width=0.0625, pad100=False)
  params = jax.jit(model.init)(FAST_KEY(), jnp.zeros((1, 32, 32, 3)))["params"]
  for name, factor in [("upscore2", 2), ("upscore_pool4", 2), ("upscore8", 8)]:
    w = np.asarray(params[name]["kernel"])
    k = w.shape[0]
    assert w.shape == (2 * factor, 2 * factor, 3, 3)
    off_diagonal = w * (1 - np.eye(3))[None, None]
    assert not off_diagonal.any(), "each class must be upsampled on its own"
    t = w[:, k // 2, 0, 0] / w[:, k // 2, 0, 0].sum() * factor  # 1-D profile (the kernel is separable)
    np.testing.assert_allclose(w[:, :, 1, 1], np.outer(t, t), rtol=1e-6, atol=1e-7)
    # A stride-`factor` transposed conv with this 1-D kernel must reproduce constants and linear
    # ramps away from the borders: that is linear interpolation.
    for signal, slope in [(np.ones(12), 0.0), (np.arange(12.0), 1.0 / factor)]:
      out = np.zeros(11 * factor + k)
      for i, v in enumerate(signal):
        out[i * factor:i * factor + k] += v * t
      inner = out[k:-k]
      np.testing.assert_allclose(np.diff(inner), slope, atol=1e-6)
      if slope == 0:
        np.testing.assert_allclose(inner, 1.0, atol=1e-6)


def test_fixed_upsampling_has_no_parameters_and_same_output():
  x = jax.random.normal(jax.random.key(2), (1, 32, 32, 3))
  learn = FCN(num_classes=3, stride=16, width=0.0625, pad100=False)
  fixed = FCN(num_classes=3, stride=16, width=0.0625, pad100=False, learn_upsampling=False)
  init_params = jax.jit(learn.init)(FAST_KEY(), x)["params"]
  upsamplers = {k: p for k, p in init_params.items() if k.startswith("upscore")}
  assert set(jax.jit(fixed.init)(FAST_KEY(), x)["params"]) == set(init_params) - set(upsamplers)
  # Score layers start at zero; random values elsewhere make the upsamplers matter.
  v_learn = random_variables(learn, x.shape, seed=3)
  v_learn["params"].update(upsamplers)
  v_fixed = {"params": {k: p for k, p in v_learn["params"].items() if k not in upsamplers}}
  np.testing.assert_allclose(learn.apply(v_learn, x)["semantic"], fixed.apply(v_fixed, x)["semantic"], rtol=1e-5,
                             atol=1e-5)


def test_fcn_resnet_aux_logits_are_an_output_at_input_resolution():
  model = get_model("fcn_resnet50_narrow", num_classes=4, aux_classifier=True)
  x = jax.random.normal(jax.random.key(1), (1, 48, 40, 3))
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(random_variables(model, x.shape), x)
  assert out["semantic"].shape == (1, 48, 40, 4)
  assert out["semantic_aux"].shape == (1, 48, 40, 4)


def test_bad_input():
  with pytest.raises(ValueError, match="x: expected height and width divisible by 32"):
    get_model("fcn8s_narrow").init(jax.random.key(0), jnp.zeros((1, 100, 100, 3)), train=False)
  with pytest.raises(ValueError, match="stride"):
    FCN(stride=4).init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="x: expected a rank-4"):
    get_model("fcn8s").init(jax.random.key(0), jnp.zeros((64, 64, 3)), train=False)

