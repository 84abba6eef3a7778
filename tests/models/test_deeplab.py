"""DeepLabV3: parameter parity with torchvision, output stride / Multi-Grid / ASPP rates, shapes."""

import jax
import jax.numpy as jnp
import pytest

from dense_jax.models._random import random_variables
from dense_jax.models.deeplab import default_rates
from dense_jax.models.flops import param_counts
from dense_jax.models.registry import get_model


@pytest.mark.parametrize("name, aux, expected", [
    # torchvision: built with aux_loss=False, and the COCO_WITH_VOC_LABELS_V1 weights' num_params
    # (which include the auxiliary FCNHead on layer3).
    pytest.param("deeplabv3_resnet50", False, 39_638_869, id="r50"),
    pytest.param("deeplabv3_resnet50", True, 42_004_074, id="r50_aux"),
    pytest.param("deeplabv3_resnet101", False, 58_630_997, id="r101"),
    pytest.param("deeplabv3_resnet101", True, 60_996_202, id="r101_aux"),
])
def test_param_counts_match_torchvision(name, aux, expected):
  assert param_counts(get_model(name, aux_classifier=aux), (1, 64, 64, 3))["params"] == expected


def test_default_rates():
  assert default_rates(16) == (6, 12, 18)   # the paper
  assert default_rates(8) == (12, 24, 36)   # torchvision / the paper at output stride 8


@pytest.mark.parametrize("kwargs", [{}, {"output_stride": 16, "multi_grid": (1, 2, 4)},
                                    {"atrous_rates": (3, 6, 9, 12)}])
@pytest.mark.parametrize("shape", [(1, 513, 513, 3), (2, 96, 128, 3)])
def test_full_size_output_at_input_resolution(kwargs, shape):
  model = get_model("deeplabv3_resnet50", **kwargs)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["semantic"], variables, x)
  assert out.shape == shape[:3] + (21,)
  n_branches = len(kwargs.get("atrous_rates", (6, 12, 18))) + 1
  assert all(f"branch{i}_conv" in variables["params"]["aspp"] for i in range(n_branches))


def test_narrow_forward_train_mode_with_aux():
  model = get_model("deeplabv3_resnet50_narrow", num_classes=3, aux_classifier=True)
  x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  v = random_variables(model, x.shape)
  out, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                rngs={"dropout": jax.random.key(2)}))(v, x)
  y = out["semantic"]
  assert y.shape == (2, 64, 64, 3) and bool(jnp.all(jnp.isfinite(y)))
  assert out["semantic_aux"].shape == (2, 64, 64, 3)


def test_bad_arguments():
  x = jnp.zeros((1, 64, 64, 3))
  with pytest.raises(ValueError, match="output_stride"):
    get_model("deeplabv3_resnet50", output_stride=4).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="multi_grid"):
    get_model("deeplabv3_resnet50", multi_grid=(1, 2)).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="model"):
    get_model("deeplabv3_resnet18")
