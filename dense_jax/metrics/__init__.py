"""Evaluation metrics: `segmentation` (confusion-matrix mIoU with an ignore label), `depth` (Eigen/BTS
depth errors, the NYUv2 Eigen crop), `normals` (angular errors), `colorization` (ab AuC); the dense ones
also have jit-able totals that add across batches, for an evaluation that accumulates. `coco` (box, mask
and keypoint AP through pycocotools; a host-side accumulator fed batch by batch) serves the instance
tasks. `breakdown` splits segmentation metrics by region (boundary band, object size)."""
