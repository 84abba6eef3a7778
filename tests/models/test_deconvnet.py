"""DeconvNet: parameter count, shapes, valid fc6 limits, unpooling with the encoder's indices."""

import jax
import jax.numpy as jnp
import pytest

from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model
from tests.models.test_segnet import check_unpooling_uses_encoder_indices


def test_param_count():
  # Noh et al. quote 252M for the full network (VGG16-BN encoder, 7x7 fc6, fc7, 7x7 fc6-deconv,
  # mirrored deconv decoder, 21-class score).
  n = param_counts(get_model("deconvnet"), (1, 224, 224, 3))["params"]
  assert n == 251_805_653
  assert abs(n - 252e6) / 252e6 < 0.01


@pytest.mark.parametrize("shape", [(1, 224, 224, 3), (2, 250, 320, 3)])
def test_full_size_output_at_input_resolution(shape):
  model = get_model("deconvnet")
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["semantic"], variables, x)
  assert out.shape == shape[:3] + (21,)


def test_decoder_unpools_with_encoder_indices():
  model = get_model("deconvnet_narrow", num_classes=3)
  check_unpooling_uses_encoder_indices(model, jax.random.normal(jax.random.key(2), (1, 64, 64, 3)),
                                       decoder_starts_at_pool5=False)


def test_bad_input():
  with pytest.raises(ValueError, match="x: expected height and width >= 224"):
    get_model("deconvnet").init(jax.random.key(0), jnp.zeros((1, 192, 256, 3)), train=False)
  with pytest.raises(ValueError, match="fc_padding"):
    get_model("deconvnet", fc_padding="full").init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False)
