"""`config.init` from torchvision files, checked against torchvision itself (skips without torch):

- `fcn_resnet50(num_classes=9, aux_loss=True)` saved with `torch.save(model.state_dict(), f)`: our model
  initialised from `f` gives torchvision's eval-mode outputs, and the trainer's first logged loss
  (frozen BN, no dropout, aux weight 0.5, the trainer's own first batch) equals torchvision's loss on
  that batch;
- a `resnet50()` classification file into `maskrcnn_resnet50_fpn`: the backbone equals the file, every
  other array is the random initialisation, and the report says so.
"""

import dataclasses
import json

import jax
import ml_collections
import numpy as np
import pytest

from dense_jax.convert import torchvision as tvc
from dense_jax.data import dense_shapes
from dense_jax.data.dense_shapes import config as shapes_config
from dense_jax.models import build
from dense_jax.models.inputs import INPUT_NORMS
from tests.convert.test_torchvision import _randomize_bn, _torch

DATASET = dense_shapes.register_config(dataclasses.replace(
    shapes_config.CONFIGS["small_64"], name="init_test_64", splits=(("train", 8), ("validation", 4))), live=True)


def _config(model, init_path, **overrides):
  config = ml_collections.ConfigDict(dict(
      seed=0, total_steps=1, batch_size=2, mesh_shape=(1, 1), num_devices=1, log_every=1, eval_every=1,
      checkpoint_every=1, eval_batch_size=2, eval_max_batches=1, tensorboard=False, num_figures=0,
      async_checkpoints=False, model=model, dataset=dict(name=DATASET, augment=False, num_threads=1),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.0),
      init=dict(path=str(init_path))))
  config.update(overrides)
  return config


def _torch_input(torch, images_nhwc):
  mean, std = (np.asarray(s, np.float32) for s in INPUT_NORMS["imagenet"])
  return torch.from_numpy(((np.asarray(images_nhwc, np.float32) - mean) / std).transpose(0, 3, 1, 2).copy())


@pytest.mark.slow
@pytest.mark.torch
def test_fcn_resnet50_file_gives_torchvisions_outputs_and_first_loss(tmp_path):
  torch, tv = _torch()
  from dense_jax.train import loop
  reference = _randomize_bn(torch, tv.models.segmentation.fcn_resnet50(
      weights=None, weights_backbone=None, num_classes=9, aux_loss=True))
  path = tmp_path / "fcn_resnet50.pth"
  torch.save(reference.state_dict(), path)
  config = _config(dict(name="fcn_resnet50", num_classes=9, aux_classifier=True, frozen_bn=True,
                        head_dropout_rate=0.0), path, tasks=dict(semantic=dict(weight=1.0, aux_weight=0.5)))

  variables, report = build.initial_variables(config, jax.random.PRNGKey(0))
  assert report["left_at_init_count"] == 0 and report["unused_count"] == 0, report["summary"]
  model, _, _ = build.build_model(config)

  setup = loop._prepare(config)   # the trainer's own first batch
  try:
    batch = next(setup.train_input)
  finally:
    setup.train_input.close()
  ours = build.apply_model(model, variables, batch["image"], train=False)
  with torch.no_grad():
    theirs = reference(_torch_input(torch, batch["image"]))
  for key, name in (("semantic", "out"), ("semantic_aux", "aux")):
    ref = theirs[name].numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(ours[key]), ref, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref).max()))

  workdir = tmp_path / "run"
  loop.train_and_evaluate(config, workdir)
  first = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines() if '"loss"' in l][0]
  assert first["step"] == 1
  target = torch.from_numpy(np.asarray(batch["semantic"], np.int64))
  ce = lambda logits: torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
  with torch.no_grad():
    want = float(ce(theirs["out"]) + 0.5 * ce(theirs["aux"]))
  np.testing.assert_allclose(first["loss"], want, rtol=1e-4, atol=1e-4)
  saved = json.loads((workdir / "init_report.json").read_text())
  assert saved["loaded"] == report["loaded"] == len(reference.state_dict()) - sum(
      k.endswith("num_batches_tracked") for k in reference.state_dict())


@pytest.mark.torch
def test_resnet50_classification_file_into_maskrcnn(tmp_path):
  torch, tv = _torch()
  reference = _randomize_bn(torch, tv.models.resnet50(weights=None))
  path = tmp_path / "resnet50.pth"
  torch.save(reference.state_dict(), path)
  config = _config(dict(name="maskrcnn_resnet50_fpn", num_classes=9), path,
                   dataset=dict(name=DATASET, image_size=128))
  rng = jax.random.PRNGKey(3)
  variables, report = build.initial_variables(config, rng)
  scratch, none = build.initial_variables(ml_collections.ConfigDict({**config.to_dict(), "init": {}}), rng)
  assert none is None

  backbone = tvc.nest(tvc.resnet(tvc.load_state_dict(path)), "backbone", "body")
  got = jax.tree.map(np.asarray, variables)
  for collection in ("params", "batch_stats"):
    jax.tree.map(np.testing.assert_array_equal, backbone[collection]["backbone"]["body"],
                 got[collection]["backbone"]["body"])
  for head in ("fpn",):
    jax.tree.map(np.testing.assert_array_equal, got["params"]["backbone"][head],
                 jax.tree.map(np.asarray, scratch["params"]["backbone"][head]))
  for head in ("rpn", "box_head", "box_predictor", "mask_head", "mask_predictor"):
    jax.tree.map(np.testing.assert_array_equal, got["params"][head], jax.tree.map(np.asarray, scratch["params"][head]))
  assert report["prefixes"] == ["backbone/body/"]
  assert report["loaded"] == len(jax.tree.leaves(backbone))
  assert set(report["unused_file_arrays"]) == {"fc.weight", "fc.bias"}
  left = report["left_at_init"]
  assert left and all(r == "absent from file" for r in left.values())
  assert {p.split("/")[0] for p in left} == {"backbone", "rpn", "box_head", "box_predictor", "mask_head",
                                              "mask_predictor"}
  assert not any(p.startswith("backbone/body/") for p in left)
