"""The three ablation networks, one module per family (each registers its model):

  `stride_ablation`      dilation vs. downsampling         dense_jax/models/stride_ablation.py
  `context_ablation`     context-module dilation schedules  dense_jax/models/context_ablation.py
  `upsampling_ablation`  a decoder's up-sampling operator   dense_jax/models/upsampling_ablation.py

This module re-exports their public names, the import path the experiments use.
"""

from dense_jax.models.context_ablation import ContextAblationNet, context_ablation
from dense_jax.models.stride_ablation import (
                                              SMALL_CHANNELS,
                                              STRIDE_ABLATION_TASKS,
                                              BasicBlock,
                                              SmallBackbone,
                                              StrideAblationNet,
                                              small_plan,
                                              stride_ablation,
)
from dense_jax.models.upsampling_ablation import UPSAMPLERS, UpsamplingAblationNet, upsampling_ablation

__all__ = ["BasicBlock", "ContextAblationNet", "SMALL_CHANNELS", "STRIDE_ABLATION_TASKS", "SmallBackbone",
           "StrideAblationNet", "UPSAMPLERS", "UpsamplingAblationNet", "context_ablation", "small_plan",
           "stride_ablation", "upsampling_ablation"]
