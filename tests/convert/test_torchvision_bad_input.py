"""Importers given a state dict of another architecture, depth or variant: our own error, naming the
argument, what it expected and what the state dict is (no torch needed: only key names matter)."""

import numpy as np
import pytest

from dense_jax.convert import torchvision as tvc

ONE = np.zeros((1,), np.float32)


def resnet_keys(prefix="", blocks=(3, 4, 6, 3), bottleneck=True):
  keys = [f"{prefix}conv1.weight", f"{prefix}bn1.weight"]
  for s, n in enumerate(blocks, start=1):
    for i in range(n):
      keys += [f"{prefix}layer{s}.{i}.conv{j}.weight" for j in ((1, 2, 3) if bottleneck else (1, 2))]
  return keys


def sd(*key_lists):
  return {k: ONE for keys in key_lists for k in keys}


VGG16 = sd(["features.0.weight", "features.2.weight", "classifier.0.weight"])
VGG16_BN = sd(["features.0.weight", "features.1.running_mean", "classifier.0.weight"])
RESNET50 = sd(resnet_keys(), ["fc.weight"])
FCN = sd(resnet_keys("backbone."), ["classifier.0.weight", "classifier.4.weight"])
DEEPLAB = sd(resnet_keys("backbone."), ["classifier.0.convs.0.0.weight", "classifier.4.weight"])
RPN_AND_BOX = ["rpn.head.conv.0.0.weight", "roi_heads.box_predictor.cls_score.weight"]
FASTER = sd(resnet_keys("backbone.body."), RPN_AND_BOX)
MASK = sd(resnet_keys("backbone.body."), RPN_AND_BOX, ["roi_heads.mask_head.0.0.weight"])
KEYPOINT = sd(resnet_keys("backbone.body."), RPN_AND_BOX, ["roi_heads.keypoint_head.0.weight"])


@pytest.mark.parametrize("state_dict, family", [
    (VGG16, "vgg16"), (VGG16_BN, "vgg16_bn"), (RESNET50, "resnet"), (FCN, "fcn_resnet"),
    (DEEPLAB, "deeplabv3_resnet"), (FASTER, "fasterrcnn"), (MASK, "maskrcnn"), (KEYPOINT, "keypointrcnn"),
    ({"encoder.weight": ONE}, "unknown"),
])
def test_architecture_names_the_family_by_its_keys(state_dict, family):
  assert tvc.architecture(state_dict) == family


@pytest.mark.parametrize("importer, state_dict, message", [
    (tvc.resnet, VGG16, r"resnet expects a torchvision resnet state dict, got a vgg16 .*convert.torchvision.vgg16$"),
    (tvc.fcn_resnet, DEEPLAB, r"fcn_resnet state dict, got a deeplabv3_resnet .*torchvision.deeplabv3_resnet$"),
    (tvc.deeplabv3_resnet, FCN, r"deeplabv3_resnet state dict, got a fcn_resnet .*torchvision.fcn_resnet$"),
    (tvc.fcn_resnet, RESNET50, r"got a resnet \(keys \['conv1.weight'.*torchvision.resnet$"),
    (tvc.maskrcnn_resnet, KEYPOINT, r"maskrcnn_resnet expects .*maskrcnn .*got a keypointrcnn .*keypointrcnn_resnet$"),
    (tvc.keypointrcnn_resnet, MASK, r"got a maskrcnn .*torchvision.maskrcnn_resnet$"),
    (tvc.maskrcnn_resnet50_fpn, FASTER, r"got a fasterrcnn .*; no importer here takes it"),
    (tvc.vgg16, FCN, r"vgg16 expects a torchvision vgg16 / vgg16_bn state dict, got a fcn_resnet"),
    (tvc.vgg16_fc, RESNET50, r"vgg16_fc expects .* got a resnet"),
    (tvc.keypointrcnn_resnet50_fpn, {"encoder.weight": ONE},
     r"got one of no known architecture \(keys \['encoder.weight'\]"),
])
def test_a_state_dict_of_another_architecture_is_named(importer, state_dict, message):
  with pytest.raises(ValueError, match=r"^state_dict: (.*)?" + message):
    importer(state_dict)


@pytest.mark.parametrize("importer, state_dict", [
    (tvc.resnet, sd(resnet_keys(blocks=(3, 4, 23, 3)))),
    (tvc.fcn_resnet, sd(resnet_keys("backbone.", (3, 4, 23, 3)), ["classifier.0.weight", "classifier.4.weight"])),
    (tvc.maskrcnn_resnet50_fpn, sd(resnet_keys("backbone.body.", (3, 4, 23, 3)), RPN_AND_BOX,
                                   ["roi_heads.mask_head.0.0.weight"])),
])
def test_a_state_dict_of_another_depth_is_named(importer, state_dict):
  kwargs = {} if importer is tvc.maskrcnn_resnet50_fpn else {"depth": 50}
  with pytest.raises(ValueError, match=r"^depth: the state dict is a ResNet-101 \(23 blocks in .*layer3\), "
                                       r"got depth=50; pass depth=101 or leave it out"):
    importer(state_dict, **kwargs)


def test_unsupported_depths_and_variants_are_named():
  with pytest.raises(ValueError, match=r"^state_dict: a ResNet of basic blocks \(ResNet-18/34"):
    tvc.resnet(sd(resnet_keys(blocks=(3, 4, 6, 3), bottleneck=False)))
  with pytest.raises(ValueError, match=r"^state_dict: 36 blocks in layer3 match no supported ResNet depth \[50, 101\]"):
    tvc.resnet(sd(resnet_keys(blocks=(3, 8, 36, 3))))   # ResNet-152
  with pytest.raises(ValueError, match=r"^batch_norm: the state dict is a vgg16_bn, got batch_norm=False"):
    tvc.vgg16(VGG16_BN, batch_norm=False)
  with pytest.raises(ValueError, match=r"^batch_norm: the state dict is a vgg16, got batch_norm=True"):
    tvc.vgg16(VGG16, batch_norm=True)
  with pytest.raises(ValueError, match=r"^frozen_bn: expected False, True or 'buffers'.*got 'yes'"):
    tvc.maskrcnn_resnet(MASK, frozen_bn="yes")


def test_a_path_instead_of_a_state_dict_says_how_to_read_it():
  with pytest.raises(ValueError, match=r"^state_dict: expected a mapping .*load_state_dict\(path\)\), got str"):
    tvc.resnet("resnet50-0676ba61.pth")
