"""ImageNet classification files (`vgg16`, `vgg16_bn`, `resnet50`) into every model built on that
backbone: the trunk lands under the model's own prefix, every trunk array loads, the rest is reported.
Planned against abstract variables (`jax.eval_shape`), so full-size models cost no memory or compute."""

import jax
import jax.numpy as jnp
import pytest

from dense_jax.convert import init_from
from dense_jax.models import build
from dense_jax.models.registry import get_model

# model, its arguments, image size, prefix of the trunk, prefix of fc6/fc7 (VGG) or None
VGG_MODELS = [
    ("fcn32s", {}, 64, "backbone/", ""),
    ("fcn8s", {}, 64, "backbone/", ""),
    ("dilated_frontend", {}, 64, "backbone/", ""),
    ("deconvnet", {}, 224, "encoder/", ""),
    ("segnet", {}, 64, "encoder/", None),
    ("eigen_fergus", {}, 240, "scale1_vgg/", None),
    ("multitask", {"tasks": ("semantic",), "trunk_batch_norm": True}, 64, "trunk/vgg/", None),
]
RESNET_MODELS = [
    ("fcn_resnet50", {}, "backbone/"),
    ("deeplabv3_resnet50", {"aux_classifier": True}, "backbone/"),
    ("maskrcnn_resnet50_fpn", {}, "backbone/body/"),
    ("keypointrcnn_resnet50_fpn", {"num_classes": 2}, "backbone/body/"),
    ("panoptic_fpn_resnet50", {"thing_classes": (1, 2, 3)}, "backbone/body/"),
]


def _file(tmp_path_factory, name, **kw):
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  path = tmp_path_factory.mktemp("weights") / f"{name}.pth"
  torch.save(getattr(tv.models, name)(weights=None, **kw).state_dict(), path)
  return init_from.read_source({"path": str(path)})


@pytest.fixture(scope="module")
def vgg16_files(tmp_path_factory):
  return {"vgg16": _file(tmp_path_factory, "vgg16"), "vgg16_bn": _file(tmp_path_factory, "vgg16_bn")}


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
  return _file(tmp_path_factory, "resnet50")


def _abstract(name, kwargs, size):
  model = get_model(name, **{"num_classes": 9, **kwargs})
  return jax.eval_shape(lambda: build.init_variables(model, jax.random.PRNGKey(0), (size, size)))


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs,size,trunk,fc", VGG_MODELS, ids=[m[0] for m in VGG_MODELS])
def test_vgg16_files_into_every_vgg_model(vgg16_files, name, kwargs, size, trunk, fc):
  variables = _abstract(name, kwargs, size)
  has_bn = any("/bn1_1/" in p for p in init_from._model_arrays(variables))   # pylint: disable=protected-access
  source = vgg16_files["vgg16_bn" if has_bn else "vgg16"]
  plan = init_from.place(variables, source, {"path": "x"})
  assert plan.prefixes[0] == trunk
  trunk_arrays = len(source.parts[0])
  fc_arrays = sum(p.startswith(fc + "fc") for p in plan.loaded) if fc is not None else 0
  assert len(plan.loaded) == trunk_arrays + fc_arrays
  assert all(p.startswith((trunk, f"{fc}fc")) for p in plan.loaded)
  if fc is not None:
    assert plan.prefixes[1] == fc and fc_arrays == 4   # fc6 and fc7, kernel and bias
  assert all(r == "absent from file" or r.startswith("shape") for r in plan.left_at_init.values())
  assert any(k.startswith("classifier.6.") for k in plan.unused)   # the ImageNet classifier


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs,trunk", RESNET_MODELS, ids=[m[0] for m in RESNET_MODELS])
def test_resnet50_file_into_every_resnet_model(resnet50_file, name, kwargs, trunk):
  plan = init_from.place(_abstract(name, kwargs, 128), resnet50_file, {"path": "x"})
  assert plan.prefixes == [trunk]
  assert len(plan.loaded) == len(resnet50_file.parts[0])
  assert set(plan.unused) == {"fc.weight", "fc.bias"}
  assert not any(p.startswith(trunk + "layer") for p in plan.left_at_init)


@pytest.mark.torch
def test_frozen_buffers_receive_the_bn_affine_terms(resnet50_file):
  """With torchvision's FrozenBatchNorm2d layout (`frozen_bn="buffers"`) scale/bias are batch stats."""
  variables = _abstract("maskrcnn_resnet50_fpn", {"frozen_bn": "buffers"}, 128)
  plan = init_from.place(variables, resnet50_file, {"path": "x"})
  assert plan.loaded["backbone/body/bn1/scale"][0] == "batch_stats"
  assert len(plan.loaded) == len(resnet50_file.parts[0])
  concrete = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables)
  out = init_from.apply(concrete, plan)
  assert (out["batch_stats"]["backbone"]["body"]["bn1"]["scale"] ==
          resnet50_file.parts[0]["bn1/scale"]).all()


@pytest.mark.torch
def test_torchvision_coco_mask_rcnn_file_into_the_coco_recipe(tmp_path):
  """torchvision's 91-output COCO heads against our 81 classes: everything else loads, those stay."""
  torch = pytest.importorskip("torch")
  tv = pytest.importorskip("torchvision")
  from experiments import pretrained_recipes
  path = tmp_path / "maskrcnn_coco.pth"
  torch.save(tv.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                       num_classes=91).state_dict(), path)
  config = pretrained_recipes.get_config("maskrcnn")
  config.dataset.image_size = 128
  config.init.path = str(path)
  model, _, size = build.build_model(config)
  plan = build.plan_init(config, model, size)
  assert plan.prefixes == [""]
  assert plan.left_at_init == {
      "box_predictor/cls_score/kernel": "shape (1024, 91) in file vs (1024, 81) here",
      "box_predictor/cls_score/bias": "shape (91,) in file vs (81,) here",
      "box_predictor/bbox_pred/kernel": "shape (1024, 364) in file vs (1024, 324) here",
      "box_predictor/bbox_pred/bias": "shape (364,) in file vs (324,) here",
      "mask_predictor/mask_fcn_logits/kernel": "shape (1, 1, 256, 91) in file vs (1, 1, 256, 81) here",
      "mask_predictor/mask_fcn_logits/bias": "shape (91,) in file vs (81,) here"}
  assert plan.loaded["backbone/body/layer1_0/bn1/scale"][0] == "batch_stats"   # FrozenBatchNorm buffers
  assert len(plan.unused) == 6
