"""Mask R-CNN / Keypoint R-CNN importers: every tensor lands in a model variable of the right shape (strict,
both BN modes, R-50 and R-101), wrong architectures fail loudly, layouts of the permuted layers (fc6's NCHW
flattening, transposed convs). Output parity with torchvision: tests/models/test_maskrcnn_parity.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.convert import torchvision as tvc
from dense_jax.models.registry import get_model


def _abstract(model):
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def _state_dict(torch, tv, kind, depth, frozen):
  from torchvision.models.detection import KeypointRCNN, MaskRCNN
  from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
  norm = tv.ops.FrozenBatchNorm2d if frozen else torch.nn.BatchNorm2d
  backbone = resnet_fpn_backbone(backbone_name=f"resnet{depth}", weights=None, trainable_layers=5, norm_layer=norm)
  model = MaskRCNN(backbone, 91) if kind == "maskrcnn" else KeypointRCNN(backbone, 2, num_keypoints=17)
  return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["maskrcnn", "keypointrcnn"])
@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("frozen", [False, True], ids=["bn", "frozen_bn"])
def test_every_tensor_lands_strictly(kind, depth, frozen):
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  sd = _state_dict(torch, tv, kind, depth, frozen)
  frozen_bn = "buffers" if frozen else False
  imported = getattr(tvc, f"{kind}_resnet")(sd, frozen_bn=frozen_bn)
  model = get_model(f"{kind}_resnet{depth}_fpn", frozen_bn=frozen_bn)
  v = tvc.load_into(_abstract(model), imported, strict=True)
  if frozen:
    assert "scale" in v["batch_stats"]["backbone"]["body"]["bn1"] and "bn1" not in v["params"]["backbone"]["body"]
  np.testing.assert_array_equal(v["params"]["rpn"]["cls_logits"]["kernel"][0, 0],
                                sd["rpn.head.cls_logits.weight"][:, :, 0, 0].T)


def test_fc6_and_transposed_conv_layouts():
  """fc6 reads torch's NCHW flattening; ours flattens NHWC: the same numbers must meet the same weights."""
  rng = np.random.default_rng(0)
  c, k, out = 3, 2, 4
  weight = rng.normal(size=(out, c * k * k)).astype(np.float32)
  imp = tvc._Importer({"fc.weight": weight, "fc.bias": np.zeros(out, np.float32)})
  tvc._linear_into(imp, "fc", ("fc",), (c, k, k))
  x = rng.normal(size=(c, k, k)).astype(np.float32)                 # one RoI's features, NCHW
  np.testing.assert_allclose(x.transpose(1, 2, 0).reshape(-1) @ imp.params["fc"]["kernel"], weight @ x.reshape(-1),
                             rtol=1e-5)
  w_t = rng.normal(size=(5, 6, 2, 2)).astype(np.float32)            # ConvTranspose2d (in, out, kh, kw)
  imp = tvc._Importer({"up.weight": w_t, "up.bias": np.zeros(6, np.float32)})
  tvc._conv_transpose_into(imp, "up", ("up",))
  assert imp.params["up"]["kernel"].shape == (2, 2, 5, 6)
  np.testing.assert_array_equal(imp.params["up"]["kernel"][1, 0], w_t[:, :, 1, 0])


def test_wrong_architecture_fails_loudly():
  sd = {"backbone.body.conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}
  with pytest.raises(ValueError, match="state_dict"):
    tvc.maskrcnn_resnet50_fpn(sd)
