"""The input rule (dense_jax.models.inputs): every registered model takes [0, 1] images and normalises
them itself, as its `input_norm` says; torchvision-weight families use the ImageNet mean/std."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.models import available_models, get_model
from dense_jax.models._random import random_variables
from dense_jax.models.inputs import INPUT_NORMS, denormalise_images, normalise_images

# Families whose weights dense_jax.convert imports from torchvision (VGG16 / ResNet encoders).
TORCHVISION_FAMILIES = ("fcn", "deeplabv3", "segnet", "deconvnet", "dilated")
FROM_SCRATCH = {"unet": "none", "sliding_window": "none", "stride_ablation": "centred",
                "context_ablation": "centred", "upsampling_ablation": "centred"}


def test_normalise_matches_the_formula_and_inverts():
  x = np.random.default_rng(0).uniform(size=(2, 3, 4, 3)).astype(np.float32)
  want = (x.astype(np.float64) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  got = normalise_images(jnp.asarray(x), "imagenet")
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(denormalise_images(got, "imagenet"), x, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(normalise_images(jnp.asarray(x), "centred"), (x - 0.5) / 0.25, rtol=1e-6)
  assert normalise_images(x, "none") is x
  with pytest.raises(ValueError, match=r"input_norm: expected one of \['centred', 'imagenet', 'none'\], got 'z'"):
    normalise_images(x, "z")
  with pytest.raises(ValueError, match="expected 3 channels"):
    normalise_images(jnp.zeros((1, 2, 2, 1)), "imagenet")


# The families of the model zoo; models added since (depth, colour, multi-task, R-CNN) declare theirs too
# and join this list as they settle.
ZOO = TORCHVISION_FAMILIES + tuple(FROM_SCRATCH)


@pytest.mark.parametrize("name", [m for m in available_models() if m.startswith(ZOO)])
def test_every_model_declares_its_normalisation(name):
  model = get_model(name)
  norm = getattr(model, "input_norm", None)
  assert norm in INPUT_NORMS, f"{name}: input_norm {norm!r}"
  if name.startswith(TORCHVISION_FAMILIES):
    assert norm == "imagenet", name
  for family, expected in FROM_SCRATCH.items():
    if name.startswith(family):
      assert norm == expected, name


@pytest.mark.parametrize("name, size", [("deeplabv3_resnet50_narrow", 32), ("segnet_narrow", 32),
                                        ("upsampling_ablation", 16)])
def test_a_model_applies_its_normalisation_first(name, size):
  """model(x) == the same weights with input_norm='none' applied to normalise(x)."""
  model = get_model(name, num_classes=3)
  raw = get_model(name, num_classes=3, input_norm="none")
  x = jax.random.uniform(jax.random.key(0), (1, size, size, 3))
  v = random_variables(model, x.shape)
  ours = model.apply(v, x, train=False)["semantic"]
  want = raw.apply(v, normalise_images(x, model.input_norm), train=False)["semantic"]
  np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)
  assert not np.allclose(ours, raw.apply(v, x, train=False)["semantic"], atol=1e-4)
