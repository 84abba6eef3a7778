"""ResNet-FPN: P2-P6 equal torchvision's `maskrcnn_resnet50_fpn().backbone` with imported weights (trainable
and frozen-buffer BN), nearest resizing equal to torch's, shapes and parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.convert import torchvision as tvc
from dense_jax.models.backbones.fpn import LEVELS, ResNetFPN, nearest_resize
from dense_jax.models.flops import param_counts


@pytest.mark.torch
@pytest.mark.parametrize("h, w, oh, ow", [(3, 5, 6, 10), (3, 5, 7, 9), (4, 4, 4, 4)])
def test_nearest_resize_equals_torch(h, w, oh, ow):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(2, h, w, 3)).astype(np.float32)
  ref = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(oh, ow), mode="nearest")
  np.testing.assert_array_equal(np.asarray(nearest_resize(jnp.asarray(x), (oh, ow))),
                                ref.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("frozen_bn, params, state", [
    (False, 26_852_416, 53_120),          # ResNet-50 trunk 23,508,032 + FPN 3,344,384; BN statistics
    ("buffers", 26_799_296, 106_240),     # the 53,120 BN affine terms become buffers
])
def test_param_counts(frozen_bn, params, state):
  counts = param_counts(ResNetFPN(frozen_bn=frozen_bn), (1, 64, 64, 3))
  assert (counts["params"], counts["state"]) == (params, state)


def test_shapes_and_strides():
  model = ResNetFPN(width=0.25)
  x = jax.ShapeDtypeStruct((2, 96, 160, 3), jnp.float32)
  v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), v, x)
  assert list(out) == list(LEVELS)
  assert [o.shape for o in out.values()] == [(2, 96 // s, 160 // s, 64) for s in (4, 8, 16, 32)] + [(2, 2, 3, 64)]


@pytest.mark.torch
@pytest.mark.parametrize("frozen_bn", [False, "buffers"])
def test_equals_torchvision(frozen_bn):
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  kwargs = {} if frozen_bn is False else {"norm_layer": tv.ops.FrozenBatchNorm2d}
  backbone = tv.models.detection.backbone_utils.resnet_fpn_backbone(
      backbone_name="resnet50", weights=None, trainable_layers=5, **kwargs)
  for m in backbone.modules():  # Non-trivial BN terms, so a mix-up of mean/var/scale/offset shows.
    if isinstance(m, (torch.nn.BatchNorm2d, tv.ops.FrozenBatchNorm2d)):
      m.running_mean.uniform_(-0.3, 0.3)
      m.running_var.uniform_(0.5, 1.5)
      (m.weight.data if isinstance(m.weight, torch.nn.Parameter) else m.weight).uniform_(0.5, 1.5)
      (m.bias.data if isinstance(m.bias, torch.nn.Parameter) else m.bias).uniform_(-0.3, 0.3)
  backbone.eval()
  sd = {k: v.numpy() for k, v in backbone.state_dict().items()}
  imp = tvc._Importer(sd)
  tvc._resnet_into(imp, "body.", 50, ("body",))
  for i in range(4):
    imp.conv(f"fpn.inner_blocks.{i}.0", ("fpn", f"inner_{i}"))
    imp.conv(f"fpn.layer_blocks.{i}.0", ("fpn", f"layer_{i}"))
  imported = imp.finish()
  if frozen_bn == "buffers":
    imported = tvc._bn_as_buffers(imported, ("body",))
  model = ResNetFPN(frozen_bn=frozen_bn)
  x = np.random.default_rng(0).normal(size=(1, 3, 96, 64)).astype(np.float32)
  xj = jnp.asarray(x.transpose(0, 2, 3, 1))
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), xj)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
  v = tvc.load_into(zeros, imported, strict=True)
  ours = jax.jit(lambda v, x: model.apply(v, x, train=frozen_bn == "buffers"))(v, xj)
  with torch.no_grad():
    ref = backbone(torch.from_numpy(x))
  for level, name in zip(LEVELS, ("0", "1", "2", "3", "pool")):
    r = ref[name].numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(ours[level]), r, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(r).max()))
