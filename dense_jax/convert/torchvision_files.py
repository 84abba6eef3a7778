"""Which torchvision model a state-dict file holds, and its arrays in our naming.

    imported = import_state_dict(load_state_dict("resnet50-0676ba61.pth"))
    imported.kind        # 'resnet50 (classification)'
    imported.parts       # [{'conv1/kernel': array, 'bn1/scale': ..., 'layer1_0/conv1/kernel': ...}]
    imported.unconverted # ['fc.bias', 'fc.weight']: file tensors no model of ours has a place for

The kind follows from the keys (torchvision's module names), checked in this order:
  `roi_heads.keypoint_head.*`              Keypoint R-CNN (ResNet-FPN)
  `roi_heads.mask_head.*`                  Mask R-CNN (ResNet-FPN)
  `backbone.layer1.*` + `classifier.0.convs.*`   DeepLabV3 (ResNet)
  `backbone.layer1.*` + `classifier.0.weight`    FCN (ResNet)
  `layer1.0.conv1.weight` (+ `fc.*`)       ResNet-50/101 ImageNet classification
  `features.0.weight` (+ `classifier.*`)   VGG16 / VGG16-BN ImageNet classification
Anything else is `UnknownArchitectureError`.

`parts` are flat `{path 'a/b/c': array}` dicts with paths as the whole torchvision model's in our
layout (`dense_jax.convert.torchvision`): a whole model's one part holds its paths from the root; a
classification file's parts are the trunk (`conv1/...`, `layer1_0/...` or VGG's `conv1_1/...`) and,
for VGG, the convolutionalised classifier (`fc6/...`, `fc7/...`). Each part is placed into a model
under the prefix where it fits (`dense_jax.convert.init_from`), e.g. a ResNet trunk under
`backbone/body/` in Mask R-CNN and under `backbone/` in DeepLabV3, VGG's under `encoder/` in SegNet
while its fc6/fc7 go to DeconvNet's root. BN affine terms are in `params` here; where a model keeps
them as frozen buffers (`frozen_bn="buffers"`) placement finds them in `batch_stats` by path.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from dense_jax.convert import torchvision as tv


class UnknownArchitectureError(ValueError):
  """A state dict that is none of the torchvision models we import."""


@dataclasses.dataclass(frozen=True)
class ImportedFile:
  kind: str
  parts: list[dict[str, Any]]        # flat {path: array} dicts, each placed at its own prefix
  unconverted: list[str]             # file tensors that no model of ours has a place for


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
  """`{'a/b/c': leaf}` of a nested mapping (collections merged: paths never collide across them)."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(flatten(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = value
  return out


def flatten_collections(tree: Mapping) -> dict[str, Any]:
  """`{'params': ..., 'batch_stats': ...}` as one flat dict of paths (collection names dropped)."""
  out = {}
  for collection in tree.values():
    out.update(flatten(collection))
  return out


def _has(state_dict, prefix: str) -> bool:
  return any(k.startswith(prefix) for k in state_dict)


def _resnet_kind(state_dict, prefix: str) -> str:
  return f"resnet{tv._detect_depth(state_dict, prefix)}"  # pylint: disable=protected-access


def import_state_dict(state_dict: Mapping[str, Any]) -> ImportedFile:
  """The file's kind and arrays (see the module docstring); UnknownArchitectureError otherwise."""
  sd = {k: np.asarray(v) for k, v in state_dict.items()}
  if _has(sd, "roi_heads.keypoint_head."):
    return ImportedFile(f"keypointrcnn_{_resnet_kind(sd, 'backbone.body.')}_fpn",
                        [flatten_collections(tv.keypointrcnn_resnet(sd))], [])
  if _has(sd, "roi_heads.mask_head."):
    return ImportedFile(f"maskrcnn_{_resnet_kind(sd, 'backbone.body.')}_fpn", [flatten_collections(tv.maskrcnn_resnet(sd))], [])
  if "backbone.layer1.0.conv1.weight" in sd and _has(sd, "classifier.0.convs."):
    return ImportedFile(f"deeplabv3_{_resnet_kind(sd, 'backbone.')}", [flatten_collections(tv.deeplabv3_resnet(sd))], [])
  if "backbone.layer1.0.conv1.weight" in sd and "classifier.0.weight" in sd:
    return ImportedFile(f"fcn_{_resnet_kind(sd, 'backbone.')}", [flatten_collections(tv.fcn_resnet(sd))], [])
  if "layer1.0.conv1.weight" in sd and "conv1.weight" in sd:
    return ImportedFile(f"{_resnet_kind(sd, '')} (classification)", [flatten_collections(tv.resnet(sd))],
                        sorted(k for k in sd if k.startswith("fc.")))
  if "features.0.weight" in sd:
    batch_norm = "features.1.running_mean" in sd
    parts = [flatten_collections(tv.vgg16(sd, batch_norm))]
    fc = ("classifier.0.", "classifier.3.")
    if "classifier.0.weight" in sd and sd["classifier.0.weight"].shape[1:] == (512 * 7 * 7,):
      parts.append(flatten_collections(tv.vgg16_fc(sd)))
    else:
      fc = ()
    unconverted = sorted(k for k in sd if k.startswith("classifier.") and not k.startswith(fc))
    return ImportedFile(f"vgg16{'_bn' if batch_norm else ''} (classification)", parts, unconverted)
  examples = sorted(sd)[:4]
  raise UnknownArchitectureError(
      f"a state dict of torchvision's VGG16 / VGG16-BN, ResNet-50/101, FCN, DeepLabV3, Mask R-CNN or "
      f"Keypoint R-CNN (keys such as 'features.0.weight', 'layer1.0.conv1.weight', "
      f"'backbone.body.layer1.0.conv1.weight'), got {len(sd)} tensors named like {examples}")
