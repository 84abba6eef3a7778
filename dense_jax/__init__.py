"""dense_jax: dense prediction (semantic, instance, panoptic, depth, normals, keypoints) in JAX/Flax.

Layout:
  ops/         pure functions: convolutions, pooling, resize, boxes, anchors, NMS, RoIAlign, matching
  nn/          Flax modules over the ops (conv, pooling, unpooling layers)
  models/      the model zoo by name (`get_model`), with backbones/ and heads/
  tasks/       one object per label type: loss, evaluation accumulator, TTA merge, drawing (`get_task`)
  losses/      the loss functions the tasks use (dense and detection)
  metrics/     accumulators and scores (segmentation, depth, normals, COCO AP, panoptic quality)
  data/        datasets (procedural `dense_shapes`, real ones in data/real/) and input pipelines
  train/       the training engine; `python -m dense_jax.train`
  evaluation/  the evaluation loop, its settings and result tables; `python -m dense_jax.evaluate` (evaluate.py)
  convert/     importers of torchvision weights;  tools/  command-line research tools
  inference.py (whole-image, tiled, multi-scale modes), viz.py (drawing), paths.py (local and gs:// paths),
  checks.py (argument validation shared by the library)
Conventions: activations NHWC, conv kernels HWIO `(kh, kw, in, out)`.
"""

__version__ = "0.1.0"
