"""SegNet: parameter count, shapes (CamVid's 360x480 included), unpooling with the encoder's indices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.backbones import VGG16
from dense_jax.models.flops import param_counts
from dense_jax.models.inputs import normalise_images
from dense_jax.models.registry import get_model


@pytest.mark.parametrize("num_classes, expected", [
    # Conv weights+biases and BN scale/offset of the reference segnet_train.prototxt layout; the
    # paper (Badrinarayanan et al., Table 6) quotes 29.5M.
    pytest.param(21, 29_455_125, id="voc21"),
    pytest.param(11, 29_449_355, id="camvid11"),
])
def test_param_count(num_classes, expected):
  n = param_counts(get_model("segnet", num_classes=num_classes), (1, 224, 224, 3))["params"]
  assert n == expected
  assert abs(n - 29.5e6) / 29.5e6 < 0.01


@pytest.mark.parametrize("shape", [(1, 224, 224, 3), (2, 360, 480, 3), (1, 97, 65, 3)])
def test_full_size_output_at_input_resolution(shape):
  model = get_model("segnet", num_classes=11)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["semantic"], variables, x)
  assert out.shape == shape[:3] + (11,)


def check_unpooling_uses_encoder_indices(model, x, decoder_starts_at_pool5=True):
  """Each decoder unpooling must write only where the encoder's maxima were (zero elsewhere).

  In SegNet block 5's unpooled map is max_unpool(pool5, indices5), so it must moreover equal conv5
  at those positions (in DeconvNet it unpools the fc6-deconv output instead).
  """
  variables = random_variables(model, x.shape, seed=1)
  _, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(variables, x)
  encoder = VGG16(width=model.width, batch_norm=True, return_indices=True)
  enc_vars = {c: v["encoder"] for c, v in variables.items() if "encoder" in v}
  # The model normalises its [0, 1] input first (its `input_norm`); the encoder alone sees what it sees.
  feats = jax.jit(encoder.apply)(enc_vars, normalise_images(x, model.input_norm))
  for b in range(5, 0, -1):
    unpooled = np.asarray(state["intermediates"][f"unpool{b}"][0])
    idx = np.asarray(feats[f"indices{b}"])
    n, h, w, c = unpooled.shape
    mask = np.zeros((n, c, h * w), bool)
    np.put_along_axis(mask, idx.transpose(0, 3, 1, 2).reshape(n, c, -1), True, axis=2)
    mask = mask.reshape(n, c, h, w).transpose(0, 2, 3, 1)
    assert not unpooled[~mask].any(), f"block {b}: values outside the encoder's argmax positions"
    assert np.count_nonzero(unpooled) > 0
    if b == 5 and decoder_starts_at_pool5:
      np.testing.assert_allclose(unpooled[mask], np.asarray(feats["conv5"])[mask], rtol=1e-5, atol=1e-6)


def test_decoder_unpools_with_encoder_indices():
  model = get_model("segnet_narrow", num_classes=3)
  check_unpooling_uses_encoder_indices(model, jax.random.normal(jax.random.key(2), (2, 64, 96, 3)))


def test_narrow_forward_and_batch_stats_update():
  model = get_model("segnet_narrow", num_classes=4)
  x = jax.random.normal(jax.random.key(3), (2, 64, 64, 3))
  v = random_variables(model, x.shape)
  y, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
  y = y["semantic"]
  assert y.shape == (2, 64, 64, 4) and bool(jnp.all(jnp.isfinite(y)))
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), upd["batch_stats"], v["batch_stats"]))
  assert all(changed)


def test_bad_input():
  with pytest.raises(ValueError, match="x: expected height and width >= 32"):
    get_model("segnet").init(jax.random.key(0), jnp.zeros((1, 16, 64, 3)), train=False)
