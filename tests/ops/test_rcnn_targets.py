"""Two-stage detector targets: the ground truth read from the data contract, Keypoint R-CNN's one merged
class, and the RPN / RoI targets on a hand case."""

import jax
import jax.numpy as jnp
import numpy as np

from dense_jax.ops import boxes as box_ops, rcnn_targets


def test_ground_truth_reads_the_data_contract():
  targets = {"boxes": jnp.asarray([[[1.0, 2.0, 5.0, 8.0], [0.0, 0.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]]]),
             "classes": jnp.asarray([[3, 2, 0]]), "num_instances": jnp.asarray([1])}
  gt = rcnn_targets.ground_truth(targets)
  np.testing.assert_array_equal(gt["boxes"][0, 0], [2.0, 1.0, 8.0, 5.0])   # (y0, x0, y1, x1) -> xyxy
  np.testing.assert_array_equal(gt["valid"], [[True, False, False]])      # row 1 is past num_instances
  assert "masks" not in gt and "keypoints" not in gt


def test_merge_classes_keeps_the_object_classes_as_class_one():
  gt = {"boxes": jnp.zeros((2, 3, 4)), "classes": jnp.asarray([[4, 5, 6], [6, 0, 5]]),
        "valid": jnp.asarray([[True, True, True], [True, False, False]])}
  # dense_shapes' squares and triangles are the object classes; a disc (4) becomes background.
  merged = rcnn_targets.merge_classes(gt, (5, 6))
  np.testing.assert_array_equal(merged["valid"], [[False, True, True], [True, False, False]])
  np.testing.assert_array_equal(merged["classes"], [[0, 1, 1], [1, 0, 0]])
  every = rcnn_targets.merge_classes(gt)   # () = every valid instance
  np.testing.assert_array_equal(every["valid"], gt["valid"])
  np.testing.assert_array_equal(every["classes"], [[1, 1, 1], [1, 0, 0]])


def test_rpn_and_roi_targets_on_a_hand_case():
  gt = {"boxes": jnp.asarray([[[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 0.0, 0.0]]]), "classes": jnp.asarray([[2, 0]]),
        "valid": jnp.asarray([[True, False]])}
  anchors = jnp.asarray([[0.0, 0.0, 8.0, 8.0], [1.0, 1.0, 9.0, 9.0], [20.0, 20.0, 28.0, 28.0]])
  labels, targets = rcnn_targets.rpn_targets(jax.random.key(0), anchors, gt, fg_iou=0.7, bg_iou=0.3,
                                             num_samples=8, positive_fraction=0.5)
  np.testing.assert_array_equal(labels, [[1, -1, 0]])                  # IoU 1, 0.62 (between), 0
  expected = box_ops.encode_boxes(gt["boxes"][0, :1], anchors[:1], box_ops.RPN_BOX_WEIGHTS)
  np.testing.assert_allclose(targets[0, 0], expected[0], atol=1e-6)
  np.testing.assert_array_equal(targets[0, 1:], 0.0)
  proposals = jnp.asarray([[[1.0, 1.0, 9.0, 9.0], [20.0, 20.0, 28.0, 28.0]]])
  rois, roi_labels, roi_gt, box_targets = rcnn_targets.roi_targets(
      jax.random.key(1), proposals, jnp.asarray([[True, True]]), gt, fg_iou=0.5, bg_iou=0.5, num_samples=4,
      positive_fraction=0.5)
  # Candidates: the 2 proposals plus the 2 ground-truth rows (the padding row is never sampled).
  assert sorted(np.asarray(roi_labels[0]).tolist()) == [-1, 0, 2, 2]
  positive = np.asarray(roi_labels[0]) == 2
  assert np.all(np.asarray(roi_gt[0])[positive] == 0)
  assert np.all(np.asarray(box_targets[0])[~positive] == 0.0)
  expected = box_ops.encode_boxes(jnp.broadcast_to(gt["boxes"][0, :1], (4, 4)), rois[0], box_ops.ROI_BOX_WEIGHTS)
  np.testing.assert_allclose(np.asarray(box_targets[0])[positive], np.asarray(expected)[positive], atol=1e-5)
