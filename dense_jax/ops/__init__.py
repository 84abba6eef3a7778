from dense_jax.ops.anchors import (
                                 FPN_ANCHOR_SIZES,
                                 FPN_ASPECT_RATIOS,
                                 base_anchors,
                                 fpn_anchors,
                                 fpn_anchors_per_level,
                                 fpn_feature_sizes,
                                 grid_anchors,
)
from dense_jax.ops.boxes import (
                                 BBOX_XFORM_CLIP,
                                 ROI_BOX_WEIGHTS,
                                 RPN_BOX_WEIGHTS,
                                 box_area,
                                 box_iou,
                                 clip_boxes_to_image,
                                 decode_boxes,
                                 encode_boxes,
                                 large_boxes_mask,
                                 xyxy_to_yxyx,
                                 yxyx_to_xyxy,
)
from dense_jax.ops.conv import conv2d, conv_transpose2d
from dense_jax.ops.mask_targets import mask_targets
from dense_jax.ops.matching import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, match_boxes
from dense_jax.ops.nms import batched_nms_padded, nms_padded
from dense_jax.ops.pooling import max_pool_with_argmax, max_unpool, unpooled_size
from dense_jax.ops.receptive_field import ReceptiveField, effective_receptive_field, receptive_field
from dense_jax.ops.resize import bilinear_upsample_kernel, interpolation_matrix, resize_bilinear
from dense_jax.ops.roi_align import fpn_level_of_boxes, fpn_levels_from_sizes, multilevel_roi_align, roi_align
from dense_jax.ops.sampling import balanced_sample, balanced_sample_mask
from dense_jax.ops.unpool import unpool_bed_of_nails, unpool_nearest
