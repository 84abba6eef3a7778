"""torchvision state dicts -> our variables: outputs equal torchvision's (needs torch + torchvision;
those tests skip cleanly without them), and the importer's own checks (no torch needed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.convert import torchvision as tvc
from dense_jax.models.backbones import VGG16, ResNet
from dense_jax.models.inputs import denormalise_images
from dense_jax.models.registry import get_model


def _torch():
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  return torch, tv


def _randomize_bn(torch, model):
  """Non-trivial BN statistics and affine terms, so a mix-up of mean/var/scale/offset shows."""
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.uniform_(-0.3, 0.3)
      m.running_var.uniform_(0.5, 1.5)
      m.weight.data.uniform_(0.5, 1.5)
      m.bias.data.uniform_(-0.3, 0.3)
  return model.eval()


def _round_trip(torch, model, tmp_path):
  """Save the state dict as a .pth file and read it back the way users will (weights_only=True)."""
  path = tmp_path / "weights.pth"
  torch.save(model.state_dict(), path)
  return tvc.load_state_dict(path)


def _abstract_zeros(model, x):
  v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), v)


def _close(ours, theirs_nchw):
  ref = theirs_nchw.detach().numpy().transpose(0, 2, 3, 1)
  scale = max(1.0, float(np.abs(ref).max()))
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.torch
@pytest.mark.parametrize("batch_norm", [False, True], ids=["vgg16", "vgg16_bn"])
def test_vgg16_backbone(batch_norm, tmp_path):
  torch, tv = _torch()
  tm = _randomize_bn(torch, (tv.models.vgg16_bn if batch_norm else tv.models.vgg16)(weights=None))
  sd = _round_trip(torch, tm, tmp_path)
  x = np.random.default_rng(0).normal(size=(1, 3, 64, 96)).astype(np.float32)
  model = VGG16(batch_norm=batch_norm)
  xj = jnp.asarray(x.transpose(0, 2, 3, 1))
  v = tvc.load_into(_abstract_zeros(model, xj), tvc.vgg16(sd), strict=True)
  with torch.no_grad():
    ref = tm.features(torch.from_numpy(x))
  _close(jax.jit(lambda v, x: model.apply(v, x)["pool5"])(v, xj), ref)


@pytest.mark.torch
def test_vgg16_fc_layers_as_convolutions(tmp_path):
  """fc6 as a 7x7 conv on pool5 equals torchvision's classifier.0 on the flattened map; fc7 likewise."""
  torch, tv = _torch()
  tm = tv.models.vgg16(weights=None).eval()
  fc = tvc.vgg16_fc(_round_trip(torch, tm, tmp_path))["params"]
  pool5 = np.random.default_rng(1).normal(size=(2, 512, 7, 7)).astype(np.float32)
  with torch.no_grad():
    h6 = tm.classifier[0](torch.from_numpy(pool5).flatten(1))
    h7 = tm.classifier[3](torch.relu(h6))
  x = jnp.asarray(pool5.transpose(0, 2, 3, 1))
  dn = ("NHWC", "HWIO", "NHWC")
  ours6 = (jax.lax.conv_general_dilated(x, fc["fc6"]["kernel"], (1, 1), "VALID", dimension_numbers=dn)
           + fc["fc6"]["bias"])
  ours7 = jax.lax.conv_general_dilated(jax.nn.relu(ours6), fc["fc7"]["kernel"], (1, 1), "VALID",
                                       dimension_numbers=dn) + fc["fc7"]["bias"]
  np.testing.assert_allclose(np.asarray(ours6)[:, 0, 0], h6.numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(ours7)[:, 0, 0], h7.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("depth", [50, 101])
def test_resnet_backbone(depth, tmp_path):
  torch, tv = _torch()
  tm = _randomize_bn(torch, getattr(tv.models, f"resnet{depth}")(weights=None))
  sd = _round_trip(torch, tm, tmp_path)
  x = np.random.default_rng(0).normal(size=(1, 3, 64, 48)).astype(np.float32)
  model = ResNet(depth)
  xj = jnp.asarray(x.transpose(0, 2, 3, 1))
  v = tvc.load_into(_abstract_zeros(model, xj), tvc.resnet(sd), strict=True)
  with torch.no_grad():
    t = torch.from_numpy(x)
    t = tm.maxpool(tm.relu(tm.bn1(tm.conv1(t))))
    ref = tm.layer4(tm.layer3(tm.layer2(tm.layer1(t))))
  _close(jax.jit(lambda v, x: model.apply(v, x)["layer4"])(v, xj), ref)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_whole_segmentation_models(name, tmp_path):
  torch, tv = _torch()
  tm = _randomize_bn(torch, getattr(tv.models.segmentation, name)(weights=None, weights_backbone=None,
                                                                  aux_loss=True))
  sd = _round_trip(torch, tm, tmp_path)
  x = np.random.default_rng(0).normal(size=(1, 3, 72, 56)).astype(np.float32)
  model = get_model(name, aux_classifier=True)
  # Our models take [0, 1] images and normalise them (ImageNet mean/std, dense_jax.models.inputs);
  # torchvision's take the normalised image: feed ours the image whose normalisation is x.
  xj = denormalise_images(jnp.asarray(x.transpose(0, 2, 3, 1)), model.input_norm)
  imported = getattr(tvc, name)(sd)
  v = tvc.load_into(_abstract_zeros(model, xj), imported, strict=True)
  with torch.no_grad():
    ref = tm(torch.from_numpy(x))
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, xj)
  _close(out["semantic"], ref["out"])
  _close(out["semantic_aux"], ref["aux"])


@pytest.mark.torch
@pytest.mark.parametrize("name", ["fcn8s", "fcn32s", "dilated_frontend"])
def test_vgg16_with_fc_fits_fcn_and_dilated_frontend(name, tmp_path):
  torch, tv = _torch()
  imported = tvc.vgg16_with_fc(_round_trip(torch, tv.models.vgg16(weights=None), tmp_path))
  model = get_model(name)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  merged = tvc.load_into(abstract, imported)  # shape-checked against the full-size model
  assert merged["params"]["fc6"]["kernel"].shape == (7, 7, 512, 4096)
  assert isinstance(merged["params"]["backbone"]["conv5_3"]["kernel"], jax.Array)


def _fake_resnet50_sd():
  """A state dict with torchvision's ResNet-50 names and shapes, filled with zeros (no torch needed)."""
  model = ResNet(50, width=0.125)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  sd = {}
  flat = jax.tree_util.tree_flatten_with_path(abstract)[0]
  for path, leaf in flat:
    keys = [p.key for p in path]
    mod, name = keys[1:-1], keys[-1]
    tname = ".".join({"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(m, m)
                     .replace("_", ".") for m in mod)  # layer1_0 -> layer1.0
    torch_name = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
                  "var": "running_var"}[name]
    shape = leaf.shape if name != "kernel" else (leaf.shape[3], leaf.shape[2], leaf.shape[0], leaf.shape[1])
    sd[f"{tname}.{torch_name}"] = np.full(shape, 0.5, np.float32)
  return model, abstract, sd


def test_load_into_round_trip_without_torch():
  model, abstract, sd = _fake_resnet50_sd()
  imported = tvc.resnet(sd, depth=50)
  v = tvc.load_into(abstract, imported, strict=True)  # abstract model variables suffice
  assert all(np.all(np.asarray(leaf) == 0.5) for leaf in jax.tree.leaves(v))


def test_importer_errors_name_the_problem():
  model, abstract, sd = _fake_resnet50_sd()
  with pytest.raises(ValueError, match="not imported"):
    tvc.resnet({**sd, "layer9.0.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)}, depth=50)
  with pytest.raises(ValueError, match="missing key 'layer1.0.conv2.weight'"):
    tvc.resnet({k: v for k, v in sd.items() if k != "layer1.0.conv2.weight"}, depth=50)
  wide = ResNet(50, width=0.25)
  wide_abstract = jax.eval_shape(lambda: wide.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  with pytest.raises(ValueError, match="params/conv1/kernel: expected shape"):
    tvc.load_into(wide_abstract, tvc.resnet(sd, depth=50))
  with pytest.raises(ValueError, match="no such variable"):
    tvc.load_into(abstract, {"params": {"fc": {"kernel": np.zeros((2, 2))}}})
