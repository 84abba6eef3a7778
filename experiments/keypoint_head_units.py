"""Which ReLUs of a trained Keypoint R-CNN's keypoint head still fire: per conv layer, the fraction of channels
active (> 0) anywhere on the validation images' ground-truth RoIs, and the RoI features' scale.

    python -m experiments.keypoint_head_units --workdir /tmp/dense_jax_kprcnn [--images 16]

A channel that never fires is dead: its ReLU passes no gradient, so it stays dead. The plain head (torchvision's
eight 3x3 convs + ReLU on the FPN's unnormalised RoI features) trained from scratch with AdamW at 2e-3 ends with
most of its first layer dead (see dense_jax/models/heads/keypoint.py); `keypoint_head_norm='gn'` is the remedy.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from dense_jax.data.pipeline import create_iterator
from dense_jax.ops import rcnn_targets
from dense_jax.tools import restore
from dense_jax.train import config as config_lib


def head_units(model, variables, batch) -> dict:
  """`{'roi_std': float, 'alive': [fraction per layer]}` on the batch's ground-truth (object class) boxes."""
  def run(module, images):
    feats = module.features(images, False)
    gt = rcnn_targets.merge_classes(rcnn_targets.ground_truth(batch, module.num_keypoints), module.object_classes)
    x = module.roi_features(feats, gt["boxes"], 14, tuple(images.shape[1:3]))
    x = x.reshape(-1, *x.shape[2:])[gt["valid"].reshape(-1)]
    module.keypoint_head(x)
    return x

  (x, state) = model.apply(variables, batch["image"], method=run, capture_intermediates=True)
  inner = state["intermediates"]["keypoint_head"]
  alive = []
  for i in range(1, len(model.keypoint_layers) + 1):
    out = inner[f"gn{i}" if f"gn{i}" in inner else f"conv_fcn{i}"]["__call__"][0]   # the ReLU's input
    alive.append(float(jnp.mean(jnp.any(out.reshape(-1, out.shape[-1]) > 0, axis=0))))
  return {"roi_std": float(jnp.std(x)), "num_rois": int(x.shape[0]), "alive": alive}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--images", type=int, default=16)
  args = parser.parse_args(argv)
  config = config_lib.resolve(restore.load_run_config(args.workdir))
  model, _, _ = restore.build_model(config)
  if not model.num_keypoints:
    raise ValueError(f"--workdir: expected a Keypoint R-CNN run, got model {config.model.name!r}")
  step, variables = restore.restore_variables(config, args.workdir, None)
  keys = ("image", "boxes", "classes", "num_instances", "keypoints")
  batch = next(iter(create_iterator(config.dataset.name, "validation", global_batch_size=args.images, seed=0,
                                    train=False, keys=keys)))
  units = head_units(model, variables, jax.tree.map(jnp.asarray, batch))
  print(f"step {step}, {units['num_rois']} ground-truth RoIs of {args.images} validation images, RoI feature std "
        f"{units['roi_std']:.1f}")
  for i, a in enumerate(units["alive"], 1):
    print(f"  keypoint head conv {i}: {100 * a:.0f}% of channels fire")
  return units


if __name__ == "__main__":
  main()
