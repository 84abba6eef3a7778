"""Import torchvision state dicts into the zoo's Flax variables.

    sd = load_state_dict("deeplabv3_resnet50_coco.pth")        # torch.load(..., weights_only=True)
    imported = deeplabv3_resnet50(sd)                          # {'params': ..., 'batch_stats': ...}
    model = get_model("deeplabv3_resnet50", aux_classifier="aux_classifier.0.weight" in sd)
    variables = load_into(model.init(key, x, train=False), imported)

Supported: VGG16 / VGG16-BN (`vgg16`; its fc6/fc7 as 7×7 / 1×1 conv kernels with `vgg16_fc`, both
with `vgg16_with_fc` for FCN and the dilated front-end), ResNet-50/101 (`resnet`), and torchvision's segmentation
models whole: `fcn_resnet50` / `fcn_resnet101` (`fcn_resnet`) and `deeplabv3_resnet50` / `_resnet101`
(`deeplabv3_resnet`), with or without their auxiliary classifier.

Layouts: a torch conv weight `(out, in, kh, kw)` becomes our HWIO kernel `w.transpose(2, 3, 1, 0)`;
BatchNorm `weight, bias` → params `scale, bias`, `running_mean, running_var` → batch_stats
`mean, var` (`num_batches_tracked` is dropped); a Linear `(out, in)` that reads a flattened NCHW
map `(C, k, k)` becomes a k×k conv kernel `w.reshape(out, C, k, k).transpose(2, 3, 1, 0)`.
Each importer first checks the state dict's family (`architecture`, from its key names), depth and
BN variant against what it imports, naming the importer that takes it; then that it used every
tensor it was meant to (a renamed key fails loudly), and `load_into` checks every shape against the
model's own variables.
Requires torch only in `load_state_dict`; the converters take any mapping of name → array.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dense_jax.models.backbones.resnet import DEPTHS
from dense_jax.models.backbones.vgg import VGG16_BLOCKS

Tree = dict[str, Any]

# torchvision families by the key prefixes only they have: (family, importer here, required, absent).
_FAMILIES = (
    ("keypointrcnn", "keypointrcnn_resnet", ("backbone.body.layer1.", "roi_heads.keypoint_head."), ()),
    ("maskrcnn", "maskrcnn_resnet", ("backbone.body.layer1.", "roi_heads.mask_head."), ()),
    ("fasterrcnn", None, ("backbone.body.layer1.", "roi_heads.box_predictor."), ()),
    ("deeplabv3_resnet", "deeplabv3_resnet", ("backbone.layer1.", "classifier.0.convs."), ()),
    ("fcn_resnet", "fcn_resnet", ("backbone.layer1.", "classifier.0.weight", "classifier.4."), ()),
    ("vgg16_bn", "vgg16", ("features.0.", "features.1.running_mean"), ()),
    ("vgg16", "vgg16", ("features.0.",), ("features.1.running_mean",)),
    ("resnet", "resnet", ("conv1.weight", "layer1."), ()),
)


def architecture(state_dict: Mapping[str, Any]) -> str:
  """The torchvision family a state dict comes from, by its key names: one of 'resnet', 'vgg16',
  'vgg16_bn', 'fcn_resnet', 'deeplabv3_resnet', 'fasterrcnn', 'maskrcnn', 'keypointrcnn', or 'unknown'."""
  has = lambda prefix: any(k.startswith(prefix) for k in state_dict)
  for family, _, required, absent in _FAMILIES:
    if all(map(has, required)) and not any(map(has, absent)):
      return family
  return "unknown"


def _expect(state_dict, families: tuple[str, ...], importer: str) -> None:
  """ValueError naming the state dict's family (and its importer) unless it is one of `families`."""
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"state_dict: expected a mapping of tensor names to arrays (read a file with "
                     f"load_state_dict(path)), got {type(state_dict).__name__}")
  found = architecture(state_dict)
  if found in families:
    return
  keys = list(state_dict)[:3]
  use = {family: fn for family, fn, _, _ in _FAMILIES}.get(found)
  hint = (f"; import it with dense_jax.convert.torchvision.{use}" if use else
          "; no importer here takes it" if found != "unknown" else "")
  raise ValueError(f"state_dict: {importer} expects a torchvision {' / '.join(families)} state dict, got "
                   f"{'a ' + found if found != 'unknown' else 'one of no known architecture'} "
                   f"(keys {keys}, ...){hint}")


def load_state_dict(path) -> dict[str, np.ndarray]:
  """`torch.load(path, weights_only=True, map_location='cpu')` as numpy float32 arrays; `path` may also
  be an open binary file (e.g. `dense_jax.paths.as_path('gs://...').open('rb')`).

  Accepts a bare state dict or a checkpoint with a 'state_dict' / 'model' entry.
  """
  import torch  # Only this function needs torch.
  obj = torch.load(path, map_location="cpu", weights_only=True)
  for key in ("state_dict", "model"):
    if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
  if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
    raise ValueError(f"path: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
  return {k: v.detach().cpu().float().numpy() for k, v in obj.items()}


class _Importer:
  """Collects params / batch_stats from a state dict and remembers which keys it used."""

  def __init__(self, state_dict: Mapping[str, Any]):
    self.sd = {k: np.asarray(v) for k, v in state_dict.items()}
    self.params: Tree = {}
    self.stats: Tree = {}
    self.used: set[str] = set()

  def _take(self, key):
    if key not in self.sd:
      raise ValueError(f"state_dict: missing key {key!r}")
    self.used.add(key)
    return self.sd[key].astype(np.float32)

  @staticmethod
  def _put(tree, path, name, value):
    for p in path:
      tree = tree.setdefault(p, {})
    tree[name] = value

  def conv(self, key: str, path: tuple[str, ...]):
    w = self._take(f"{key}.weight")
    if w.ndim != 4:
      raise ValueError(f"state_dict: {key}.weight: expected a 4-D conv weight, got shape {w.shape}")
    self._put(self.params, path, "kernel", w.transpose(2, 3, 1, 0))
    if f"{key}.bias" in self.sd:
      self._put(self.params, path, "bias", self._take(f"{key}.bias"))

  def linear_as_conv(self, key: str, path: tuple[str, ...], channels: int, kernel: int):
    w = self._take(f"{key}.weight")
    if w.shape[1] != channels * kernel * kernel:
      raise ValueError(f"state_dict: {key}.weight: expected {channels}x{kernel}x{kernel} inputs, got {w.shape}")
    self._put(self.params, path, "kernel", w.reshape(w.shape[0], channels, kernel, kernel).transpose(2, 3, 1, 0))
    self._put(self.params, path, "bias", self._take(f"{key}.bias"))

  def bn(self, key: str, path: tuple[str, ...]):
    self._put(self.params, path, "scale", self._take(f"{key}.weight"))
    self._put(self.params, path, "bias", self._take(f"{key}.bias"))
    self._put(self.stats, path, "mean", self._take(f"{key}.running_mean"))
    self._put(self.stats, path, "var", self._take(f"{key}.running_var"))
    self.used.add(f"{key}.num_batches_tracked")

  def finish(self, prefixes: tuple[str, ...] = ("",), ignore: tuple[str, ...] = ()) -> Tree:
    """Variables; ValueError if a key under `prefixes` (and not under `ignore`) went unused."""
    left = sorted(k for k in self.sd if k not in self.used and k.startswith(prefixes)
                  and not k.startswith(ignore) and not k.endswith("num_batches_tracked"))
    if left:
      raise ValueError(f"state_dict: {len(left)} tensors were not imported (wrong architecture?): {left[:8]}")
    out = {"params": self.params}
    if self.stats:
      out["batch_stats"] = self.stats
    return out


# ----------------------------------------------------------------------------- VGG16


def _vgg16_into(imp: _Importer, prefix: str, batch_norm: bool, path: tuple[str, ...]):
  index = 0
  for b, block in enumerate(VGG16_BLOCKS, start=1):
    for i, _ in enumerate(block, start=1):
      imp.conv(f"{prefix}{index}", path + (f"conv{b}_{i}",))
      index += 1
      if batch_norm:
        imp.bn(f"{prefix}{index}", path + (f"bn{b}_{i}",))
        index += 1
      index += 1  # ReLU
    index += 1  # MaxPool


def vgg16(state_dict, batch_norm: bool | None = None) -> Tree:
  """torchvision `vgg16` / `vgg16_bn` `features.*` → variables of `backbones.VGG16` (classifier ignored).

  `batch_norm=None` detects it from the state dict.
  """
  _expect(state_dict, ("vgg16", "vgg16_bn"), "vgg16")
  has_bn = architecture(state_dict) == "vgg16_bn"
  if batch_norm is not None and batch_norm != has_bn:
    raise ValueError(f"batch_norm: the state dict is a {'vgg16_bn' if has_bn else 'vgg16'}, got "
                     f"batch_norm={batch_norm!r}; pass batch_norm={has_bn} or leave it out")
  batch_norm = has_bn
  imp = _Importer(state_dict)
  _vgg16_into(imp, "features.", batch_norm, ())
  return imp.finish(prefixes=("features.",))


def vgg16_fc(state_dict) -> Tree:
  """torchvision VGG16's classifier.0 / classifier.3 as `fc6` (7×7 conv on pool5) and `fc7` (1×1) params.

  The FCN "convolutionalization": fc6 reads the flattened 512×7×7 pool5 map, so its weight reshapes
  to a 7×7×512×4096 kernel and its output at each position equals the Linear layer on the 7×7 window.
  """
  _expect(state_dict, ("vgg16", "vgg16_bn"), "vgg16_fc")
  imp = _Importer(state_dict)
  imp.linear_as_conv("classifier.0", ("fc6",), 512, 7)
  imp.linear_as_conv("classifier.3", ("fc7",), 4096, 1)
  return imp.finish(prefixes=("classifier.0", "classifier.3"))


def vgg16_with_fc(state_dict, trunk: str = "backbone") -> Tree:
  """The VGG16 trunk (under `trunk`) plus fc6/fc7 as convs: what FCN-32s/16s/8s (`trunk='backbone'`)
  and the dilated front-end start from (their score layers stay as initialised). With pad 100 or
  dilation the kernels keep their shapes, so the same tensors serve every variant."""
  trunk_vars = nest(vgg16(state_dict), trunk)
  fc = vgg16_fc(state_dict)
  return {**trunk_vars, "params": {**trunk_vars["params"], **fc["params"]}}


# ----------------------------------------------------------------------------- ResNet


def _resnet_into(imp: _Importer, prefix: str, depth: int, path: tuple[str, ...]):
  if depth not in DEPTHS:
    raise ValueError(f"depth: expected one of {sorted(DEPTHS)}, got {depth!r}")
  imp.conv(f"{prefix}conv1", path + ("conv1",))
  imp.bn(f"{prefix}bn1", path + ("bn1",))
  for s, n in enumerate(DEPTHS[depth], start=1):
    for i in range(n):
      t, p = f"{prefix}layer{s}.{i}", path + (f"layer{s}_{i}",)
      for j in (1, 2, 3):
        imp.conv(f"{t}.conv{j}", p + (f"conv{j}",))
        imp.bn(f"{t}.bn{j}", p + (f"bn{j}",))
      if f"{t}.downsample.0.weight" in imp.sd:
        imp.conv(f"{t}.downsample.0", p + ("downsample_conv",))
        imp.bn(f"{t}.downsample.1", p + ("downsample_bn",))


def resnet_depth(state_dict, prefix: str = "", depth: int | None = None) -> int:
  """The bottleneck ResNet depth of the blocks under `prefix` (from layer3's block count); ValueError
  if they match no supported depth or contradict a given `depth`."""
  if f"{prefix}layer1.0.conv1.weight" in state_dict and f"{prefix}layer1.0.conv3.weight" not in state_dict:
    raise ValueError(f"state_dict: a ResNet of basic blocks (ResNet-18/34: no {prefix}layer1.0.conv3); only "
                     f"the bottleneck ResNets {sorted(DEPTHS)} are supported")
  blocks = {k[len(prefix):].split(".")[1] for k in state_dict if k.startswith(f"{prefix}layer3.")}
  found = next((d for d, stages in DEPTHS.items() if stages[2] == len(blocks)), None)
  if found is None:
    raise ValueError(f"state_dict: {len(blocks)} blocks in {prefix}layer3 match no supported ResNet depth "
                     f"{sorted(DEPTHS)}")
  if depth is not None and depth != found:
    raise ValueError(f"depth: the state dict is a ResNet-{found} ({len(blocks)} blocks in {prefix}layer3), "
                     f"got depth={depth!r}; pass depth={found} or leave it out")
  return found


def resnet(state_dict, depth: int | None = None) -> Tree:
  """torchvision `resnet50` / `resnet101` → variables of `backbones.ResNet` (`fc` ignored)."""
  _expect(state_dict, ("resnet",), "resnet")
  depth = resnet_depth(state_dict, "", depth)
  imp = _Importer(state_dict)
  _resnet_into(imp, "", depth, ())
  return imp.finish(ignore=("fc.",))


# ----------------------------------------------------------------------------- segmentation models


def _fcn_head_into(imp: _Importer, prefix: str, path: tuple[str, ...]):
  imp.conv(f"{prefix}.0", path + ("conv",))
  imp.bn(f"{prefix}.1", path + ("bn",))
  imp.conv(f"{prefix}.4", path + ("classifier",))


def _segmentation(state_dict, depth, family, head_into) -> Tree:
  _expect(state_dict, (family,), family)
  depth = resnet_depth(state_dict, "backbone.", depth)
  imp = _Importer(state_dict)
  _resnet_into(imp, "backbone.", depth, ("backbone",))
  head_into(imp)
  if "aux_classifier.0.weight" in imp.sd:
    _fcn_head_into(imp, "aux_classifier", ("aux_classifier",))
  return imp.finish()


def fcn_resnet(state_dict, depth: int | None = None) -> Tree:
  """torchvision `fcn_resnet50` / `fcn_resnet101` (with its aux head if present) → `FCNResNet` variables.

  Build the model with `aux_classifier=True` when the state dict has `aux_classifier.*`.
  """
  return _segmentation(state_dict, depth, "fcn_resnet", lambda imp: _fcn_head_into(imp, "classifier", ("classifier",)))


def _deeplab_head_into(imp: _Importer):
  aspp = "classifier.0"
  branches = sorted({int(k.split(".")[3]) for k in imp.sd if k.startswith(f"{aspp}.convs.")})
  pool = branches[-1]  # ASPPPooling is the last branch: [avgpool, conv, bn, relu].
  for b in branches[:-1]:
    imp.conv(f"{aspp}.convs.{b}.0", ("aspp", f"branch{b}_conv"))
    imp.bn(f"{aspp}.convs.{b}.1", ("aspp", f"branch{b}_bn"))
  imp.conv(f"{aspp}.convs.{pool}.1", ("aspp", "pool_conv"))
  imp.bn(f"{aspp}.convs.{pool}.2", ("aspp", "pool_bn"))
  imp.conv(f"{aspp}.project.0", ("aspp", "project_conv"))
  imp.bn(f"{aspp}.project.1", ("aspp", "project_bn"))
  imp.conv("classifier.1", ("head_conv",))
  imp.bn("classifier.2", ("head_bn",))
  imp.conv("classifier.4", ("classifier",))


def deeplabv3_resnet(state_dict, depth: int | None = None) -> Tree:
  """torchvision `deeplabv3_resnet50` / `_resnet101` (with its aux head if present) → `DeepLabV3` variables."""
  return _segmentation(state_dict, depth, "deeplabv3_resnet", _deeplab_head_into)


fcn_resnet50 = fcn_resnet
deeplabv3_resnet50 = deeplabv3_resnet


# ----------------------------------------------------------------------------- placing into a model


def nest(tree: Tree, *path: str) -> Tree:
  """Put each collection of `tree` under `path`: `nest(vgg16(sd), 'backbone')` for a model's trunk."""
  out = {}
  for collection, sub in tree.items():
    for p in reversed(path):
      sub = {p: sub}
    out[collection] = sub
  return out


def load_into(variables, imported: Tree, strict: bool = False):
  """`variables` (from `model.init`) with every leaf of `imported` put in its place.

  ValueError if an imported leaf has no counterpart or a different shape (naming the path and both
  shapes), or, with `strict=True`, if a model leaf received nothing. Returns new nested dicts
  (imported leaves as jnp arrays of the model's dtype); `variables` is not modified. `variables`
  may be abstract (`jax.eval_shape(model.init, ...)`) to check a full-size model without memory.
  """
  import jax.numpy as jnp

  def merge(dst, src, path):
    if not isinstance(src, Mapping):
      if isinstance(dst, Mapping):
        raise ValueError(f"imported {'/'.join(path)}: the model has a subtree here, not an array")
      if tuple(dst.shape) != tuple(np.shape(src)):
        raise ValueError(f"imported {'/'.join(path)}: expected shape {tuple(dst.shape)} (the model's), "
                         f"got {tuple(np.shape(src))}")
      return jnp.asarray(src, dst.dtype)
    if not isinstance(dst, Mapping):
      raise ValueError(f"imported {'/'.join(path)}: the model has an array here, not a subtree")
    out = dict(dst)
    for k, v in src.items():
      if k not in dst:
        raise ValueError(f"imported {'/'.join(path + (k,))}: the model has no such variable "
                         f"(it has {sorted(dst)})")
      out[k] = merge(dst[k], v, path + (k,))
    if strict:
      missing = sorted(set(dst) - set(src))
      if missing:
        raise ValueError(f"imported {'/'.join(path) or '<root>'}: nothing for {missing}")
    return out

  return merge(variables, imported, ())


# ----------------------------------------------------------------------------- detection models
# torchvision's Mask R-CNN / Keypoint R-CNN (`models.detection`) → `dense_jax.models.maskrcnn` variables.


def _linear_into(imp: _Importer, key: str, path: tuple[str, ...], nchw: tuple[int, int, int] | None = None):
  """A `Linear` `(out, in)` → Dense kernel `(in, out)`; with `nchw = (C, k, k)` its input is a flattened
  NCHW map, permuted to our NHWC flattening `(k, k, C)`."""
  w = imp._take(f"{key}.weight")
  if nchw is not None:
    c, kh, kw = nchw
    if w.shape[1] != c * kh * kw:
      raise ValueError(f"state_dict: {key}.weight: expected {c}x{kh}x{kw} inputs, got {w.shape}")
    w = w.reshape(w.shape[0], c, kh, kw).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
  imp._put(imp.params, path, "kernel", w.T)
  imp._put(imp.params, path, "bias", imp._take(f"{key}.bias"))


def _conv_transpose_into(imp: _Importer, key: str, path: tuple[str, ...]):
  """`ConvTranspose2d` weight `(in, out, kh, kw)` → our `(kh, kw, in, out)` (`dense_jax.nn.ConvTranspose`)."""
  imp._put(imp.params, path, "kernel", imp._take(f"{key}.weight").transpose(2, 3, 0, 1))
  imp._put(imp.params, path, "bias", imp._take(f"{key}.bias"))


def _bn_as_buffers(tree: Tree, path: tuple[str, ...]) -> Tree:
  """Moves every BN `scale` / `bias` under `path` from params to batch_stats (`frozen_bn="buffers"`)."""
  def walk(params, stats):
    for k in list(params):
      if isinstance(params[k], dict):
        if "mean" in stats.get(k, {}) and "scale" in params[k]:
          stats[k]["scale"] = params[k].pop("scale")
          stats[k]["bias"] = params[k].pop("bias")
          if not params[k]:
            del params[k]
        elif isinstance(stats.get(k), dict):
          walk(params[k], stats[k])
  params, stats = tree["params"], tree["batch_stats"]
  for p in path:
    params, stats = params[p], stats[p]
  walk(params, stats)
  return tree


def _rcnn(state_dict, depth, frozen_bn, family, heads_into) -> Tree:
  _expect(state_dict, (family,), f"{family}_resnet")
  if frozen_bn not in (False, True, "buffers"):
    raise ValueError(f"frozen_bn: expected False, True or 'buffers' (the model's own setting), got {frozen_bn!r}")
  depth = resnet_depth(state_dict, "backbone.body.", depth)
  imp = _Importer(state_dict)
  _resnet_into(imp, "backbone.body.", depth, ("backbone", "body"))
  for i in range(4):
    imp.conv(f"backbone.fpn.inner_blocks.{i}.0", ("backbone", "fpn", f"inner_{i}"))
    imp.conv(f"backbone.fpn.layer_blocks.{i}.0", ("backbone", "fpn", f"layer_{i}"))
  imp.conv("rpn.head.conv.0.0", ("rpn", "conv"))
  imp.conv("rpn.head.cls_logits", ("rpn", "cls_logits"))
  imp.conv("rpn.head.bbox_pred", ("rpn", "bbox_pred"))
  channels = imp.sd["backbone.fpn.layer_blocks.0.0.weight"].shape[0]
  resolution = int(round((imp.sd["roi_heads.box_head.fc6.weight"].shape[1] / channels) ** 0.5))
  _linear_into(imp, "roi_heads.box_head.fc6", ("box_head", "fc6"), (channels, resolution, resolution))
  _linear_into(imp, "roi_heads.box_head.fc7", ("box_head", "fc7"))
  _linear_into(imp, "roi_heads.box_predictor.cls_score", ("box_predictor", "cls_score"))
  _linear_into(imp, "roi_heads.box_predictor.bbox_pred", ("box_predictor", "bbox_pred"))
  heads_into(imp)
  tree = imp.finish()
  if frozen_bn == "buffers":
    tree = _bn_as_buffers(tree, ("backbone", "body"))
  return tree


def _mask_heads_into(imp: _Importer):
  n = len({k.split(".")[2] for k in imp.sd if k.startswith("roi_heads.mask_head.")})
  for i in range(n):
    imp.conv(f"roi_heads.mask_head.{i}.0", ("mask_head", f"mask_fcn{i + 1}"))
  _conv_transpose_into(imp, "roi_heads.mask_predictor.conv5_mask", ("mask_predictor", "conv5_mask"))
  imp.conv("roi_heads.mask_predictor.mask_fcn_logits", ("mask_predictor", "mask_fcn_logits"))


def _keypoint_heads_into(imp: _Importer):
  convs = sorted({int(k.split(".")[2]) for k in imp.sd if k.startswith("roi_heads.keypoint_head.")})
  for i, index in enumerate(convs):  # Sequential(conv, ReLU, conv, ReLU, ...): convs at 0, 2, 4, ...
    imp.conv(f"roi_heads.keypoint_head.{index}", ("keypoint_head", f"conv_fcn{i + 1}"))
  _conv_transpose_into(imp, "roi_heads.keypoint_predictor.kps_score_lowres",
                       ("keypoint_predictor", "kps_score_lowres"))


def maskrcnn_resnet(state_dict, depth: int | None = None, frozen_bn: bool | str = False) -> Tree:
  """torchvision `maskrcnn_resnet50_fpn` (or an R-101-FPN built the same way) → `MaskRCNN` variables.

  Build the model with the same `num_classes` and `frozen_bn` (`"buffers"` for torchvision's pretrained
  builds, whose backbone BN is `FrozenBatchNorm2d`: its affine terms then go to `batch_stats`).
  """
  return _rcnn(state_dict, depth, frozen_bn, "maskrcnn", _mask_heads_into)


def keypointrcnn_resnet(state_dict, depth: int | None = None, frozen_bn: bool | str = False) -> Tree:
  """torchvision `keypointrcnn_resnet50_fpn` → `KeypointRCNN` variables (see `maskrcnn_resnet`)."""
  return _rcnn(state_dict, depth, frozen_bn, "keypointrcnn", _keypoint_heads_into)


def maskrcnn_resnet50_fpn(state_dict, frozen_bn: bool | str = False) -> Tree:
  """torchvision `maskrcnn_resnet50_fpn` state dict → `maskrcnn_resnet50_fpn` variables."""
  return maskrcnn_resnet(state_dict, 50, frozen_bn)


def keypointrcnn_resnet50_fpn(state_dict, frozen_bn: bool | str = False) -> Tree:
  """torchvision `keypointrcnn_resnet50_fpn` state dict → `keypointrcnn_resnet50_fpn` variables."""
  return keypointrcnn_resnet(state_dict, 50, frozen_bn)
