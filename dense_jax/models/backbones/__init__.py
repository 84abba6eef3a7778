"""Backbones: VGG16 / VGG16-BN and ResNet-50/101 trunks returning named intermediate feature maps."""

from dense_jax.models.backbones.resnet import Bottleneck, ResNet, stage_dilations
from dense_jax.models.backbones.vgg import VGG16, VGG16_BLOCKS
