"""Per-task losses, one module per family; the public functions are re-exported here
(`from dense_jax import losses; losses.depth_loss(...)`).

  segmentation   segmentation_cross_entropy (softmax cross-entropy with `IGNORE_LABEL`)
  depth          depth_loss (Eigen & Fergus: scale-invariant log error plus gradient matching)
  normals        normals_loss (negative mean dot product of unit normals)
  colorization   colorization_loss (Zhang et al.: class-rebalanced cross-entropy over ab bins)
  detection      rpn_loss, fast_rcnn_loss, mask_loss, keypoint_loss, smooth_l1, detection_losses
                 (torchvision's two-stage detector losses)

Every loss is computed in float32 and normalised by `max(count, 1)`, so a batch without a labelled
item gives a finite loss (0, with zero gradient, for the terms that need one).
"""

from dense_jax.losses.colorization import colorization_loss
from dense_jax.losses.depth import depth_loss
from dense_jax.losses.detection import (
                                        SMOOTH_L1_BETA,
                                        detection_losses,
                                        fast_rcnn_loss,
                                        keypoint_loss,
                                        mask_loss,
                                        rpn_loss,
                                        smooth_l1,
)
from dense_jax.losses.normals import normals_loss
from dense_jax.losses.segmentation import IGNORE_LABEL, segmentation_cross_entropy
