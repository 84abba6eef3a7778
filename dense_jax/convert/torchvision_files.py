"""Which torchvision model a state-dict file holds, and its arrays in our naming.

    imported = import_state_dict(load_state_dict("resnet50-0676ba61.pth"))
    imported.kind        # 'resnet50 (classification)'
    imported.parts       # [{'conv1/kernel': array, 'bn1/scale': ..., 'layer1_0/conv1/kernel': ...}]
    imported.unconverted # ['fc.bias', 'fc.weight']: file tensors no model of ours has a place for

The kind follows from the keys (torchvision's module names, `torchvision.architecture`): Keypoint
R-CNN and Mask R-CNN (ResNet-FPN), DeepLabV3 and FCN (ResNet), ResNet-50/101 and VGG16 / VGG16-BN
ImageNet classification. Anything else is `UnknownArchitectureError`.

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
from collections.abc import Mapping
from typing import Any

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


def import_state_dict(state_dict: Mapping[str, Any]) -> ImportedFile:
  """The file's kind and arrays (see the module docstring); UnknownArchitectureError otherwise."""
  sd = {k: np.asarray(v) for k, v in state_dict.items()}
  family = tv.architecture(sd)
  if family in ("keypointrcnn", "maskrcnn"):
    importer = tv.keypointrcnn_resnet if family == "keypointrcnn" else tv.maskrcnn_resnet
    return ImportedFile(f"{family}_resnet{tv.resnet_depth(sd, 'backbone.body.')}_fpn",
                        [flatten_collections(importer(sd))], [])
  if family in ("deeplabv3_resnet", "fcn_resnet"):
    importer = tv.deeplabv3_resnet if family == "deeplabv3_resnet" else tv.fcn_resnet
    return ImportedFile(f"{family.removesuffix('_resnet')}_resnet{tv.resnet_depth(sd, 'backbone.')}",
                        [flatten_collections(importer(sd))], [])
  if family == "resnet":
    return ImportedFile(f"resnet{tv.resnet_depth(sd, '')} (classification)", [flatten_collections(tv.resnet(sd))],
                        sorted(k for k in sd if k.startswith("fc.")))
  if family in ("vgg16", "vgg16_bn"):
    parts = [flatten_collections(tv.vgg16(sd))]
    fc = ("classifier.0.", "classifier.3.")
    if "classifier.0.weight" in sd and sd["classifier.0.weight"].shape[1:] == (512 * 7 * 7,):
      parts.append(flatten_collections(tv.vgg16_fc(sd)))
    else:
      fc = ()
    unconverted = sorted(k for k in sd if k.startswith("classifier.") and not k.startswith(fc))
    return ImportedFile(f"{family} (classification)", parts, unconverted)
  examples = sorted(sd)[:4]
  raise UnknownArchitectureError(
      f"a state dict of torchvision's VGG16 / VGG16-BN, ResNet-50/101, FCN, DeepLabV3, Mask R-CNN or "
      f"Keypoint R-CNN (keys such as 'features.0.weight', 'layer1.0.conv1.weight', "
      f"'backbone.body.layer1.0.conv1.weight'), got {len(sd)} tensors named like {examples}")
