"""Backbones: VGG16 / VGG16-BN and ResNet-50/101 trunks returning named intermediate feature maps,
and ResNet-FPN (P2-P6) for the detectors."""

from dense_jax.models.backbones.fpn import FPN, ResNetFPN
from dense_jax.models.backbones.resnet import Bottleneck, ResNet, stage_dilations
from dense_jax.models.backbones.vgg import VGG16, VGG16_BLOCKS
