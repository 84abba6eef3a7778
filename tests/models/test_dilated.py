"""Yu & Koltun's dilated networks: front-end shapes/params, context module identity init and sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.dilated import CONTEXT_DILATIONS, ContextModule, identity_kernel
from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model

FAST_KEY = lambda: jax.random.key(0, impl="unsafe_rbg")


def _context_params(c, large):
  """Table 1 of the paper, counted by hand: 7 3x3 layers (dilations 1,1,2,4,8,16,1) + a 1x1 layer."""
  widths = [c] + ([2 * c, 2 * c, 4 * c, 8 * c, 16 * c, 32 * c, 32 * c] if large else [c] * 7)
  n = sum(9 * a * b + b for a, b in zip(widths[:-1], widths[1:]))
  return n + widths[-1] * c + c


def test_receptive_field_of_the_default_schedule():
  # Stacked 3x3 convs: each adds 2·dilation; the paper's 3, 5, 9, 17, 33, 65, 67.
  assert list(1 + 2 * np.cumsum(CONTEXT_DILATIONS)) == [3, 5, 9, 17, 33, 65, 67]


@pytest.mark.parametrize("name, expected", [
    # VGG16 convs 14,714,688 + fc6 (7x7x512x4096 + 4096) + fc7 (4096² + 4096) + final (4096·21 + 21).
    pytest.param("dilated_frontend", 134_346_581, id="frontend"),
    pytest.param("dilated_context", 134_346_581 + _context_params(21, large=True), id="frontend+large"),
])
def test_param_counts(name, expected):
  assert param_counts(get_model(name), (1, 64, 64, 3))["params"] == expected


@pytest.mark.parametrize("large", [False, True])
def test_context_module_param_count(large):
  assert param_counts(ContextModule(large=large), (1, 16, 16, 21))["params"] == _context_params(21, large)


@pytest.mark.parametrize("large", [False, True])
def test_identity_initialised_context_module_leaves_input_unchanged(large):
  """Zero-noise identity init: the module is the identity on non-negative inputs (its truncations pass them)."""
  module = ContextModule(large=large, init_noise=0.0)
  x = jax.random.uniform(jax.random.key(1), (2, 24, 20, 5))
  variables = jax.jit(module.init)(FAST_KEY(), x)
  np.testing.assert_allclose(jax.jit(module.apply)(variables, x), x, rtol=1e-5, atol=1e-6)


def test_noisy_identity_init_is_close_to_identity():
  module = ContextModule(large=True, init_noise=1e-3)
  x = jax.random.uniform(jax.random.key(1), (1, 16, 16, 4))
  variables = jax.jit(module.init)(FAST_KEY(), x)
  y = jax.jit(module.apply)(variables, x)
  assert float(jnp.abs(y - x).max()) < 0.1
  assert float(jnp.abs(y - x).max()) > 0  # The noise is there.


def test_identity_kernel_formula():
  # Large layer 1 (C -> 2C): output channel b copies input floor(b/2) with weight C / 2C = 1/2.
  w = identity_kernel(3, 2, 4, base=2)
  np.testing.assert_array_equal(w[1, 1], [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
  assert not np.delete(w.reshape(9, 2, 4), 4, axis=0).any()


def test_frontend_output_stride_and_resolution():
  model = get_model("dilated_frontend")
  x = jax.ShapeDtypeStruct((1, 96, 128, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  coarse = jax.eval_shape(lambda v, x: model.apply(v, x, train=False, upsample=False)["semantic"], variables, x)
  assert coarse.shape == (1, 12, 16, 21)
  assert jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["semantic"], variables, x).shape == (1, 96, 128, 21)
  assert variables["params"]["fc6"]["kernel"].shape == (7, 7, 512, 4096)


def test_narrow_context_network_forward():
  model = get_model("dilated_context_narrow", num_classes=4)
  x = jax.random.normal(jax.random.key(3), (1, 64, 48, 3))
  y = jax.jit(lambda v, x: model.apply(v, x, train=False)["semantic"])(random_variables(model, x.shape), x)
  assert y.shape == (1, 64, 48, 4) and bool(jnp.all(jnp.isfinite(y)))


def test_bad_input():
  with pytest.raises(ValueError, match="x: expected height and width divisible by 8"):
    get_model("dilated_frontend").init(jax.random.key(0), jnp.zeros((1, 60, 64, 3)), train=False)
  with pytest.raises(ValueError, match="dilations"):
    ContextModule(large=True, dilations=(1,) * 8).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
