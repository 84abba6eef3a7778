"""Paired augmentations: every label type stays consistent under flip, scale, crop and the full recipe."""

import dataclasses

import numpy as np
import pytest

from dense_jax.data import augment
from dense_jax.data.dense_shapes import config as config_lib, scene as scene_lib

CFG = dataclasses.replace(config_lib.CONFIGS["small_64"], name="aug_test", image_size=48)
FLIP_PERM = CFG.classes.keypoint_flip_perm()
THINGS = CFG.classes.thing_ids


def _example(i):
  return scene_lib.generate_example(scene_lib.example_seed(CFG, "train", i), CFG)


@pytest.fixture(scope="module")
def examples():
  # Enough scenes that squares and triangles with visible and occluded corners all occur.
  return [_example(i) for i in range(12)]


def _check_consistent(ex, box_tol=0.0, kp_tol=0.0):
  """The invariants every transformed example keeps (tolerances in pixels, 0 = exact)."""
  n = int(ex["num_instances"])
  masks = ex["masks"].astype(bool)
  sem = ex["semantic"]
  assert not masks[n:].any() and not ex["classes"][n:].any() and not ex["keypoints"][n:].any()
  assert masks[:n].sum(0).max(initial=0) <= 1
  np.testing.assert_array_equal(masks.any(0), np.isin(sem, THINGS))
  h, w = sem.shape
  for i in range(n):
    assert masks[i].any()
    assert np.all(sem[masks[i]] == ex["classes"][i])
    ys, xs = np.nonzero(masks[i])
    y0, x0, y1, x1 = ex["boxes"][i]
    assert 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w
    assert y0 <= ys.min() + box_tol and x0 <= xs.min() + box_tol
    assert y1 >= ys.max() + 1 - box_tol and x1 >= xs.max() + 1 - box_tol
    for x, y, v in ex["keypoints"][i]:
      if v == 2 and kp_tol == 0:
        assert masks[i][int(np.floor(y)), int(np.floor(x))]
      elif v == 2:   # resampling moves silhouettes by up to a source pixel: distance to the mask
        assert np.sqrt(np.min((xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2)) <= kp_tol
      elif v == 0:
        assert x == 0 and y == 0
  valid = np.linalg.norm(ex["normals"], axis=-1)
  assert np.all((np.abs(valid - 1) < 1e-5) | (valid == 0))
  assert np.all((valid == 0) == (ex["depth"] == 0))
  seg = ex["segment_classes"][ex["panoptic"]]
  ignore = sem == 255
  np.testing.assert_array_equal(seg[~ignore], sem[~ignore])
  assert np.all(ex["panoptic"][ignore] == 0) and np.all(valid[ignore] == 0)


def test_generated_examples_satisfy_the_checker(examples):
  for ex in examples:
    _check_consistent(ex)


def test_hflip_mirrors_every_label(examples):
  for ex in examples:
    f = augment.hflip(ex, FLIP_PERM)
    _check_consistent(f)
    w = ex["image"].shape[1]
    np.testing.assert_array_equal(f["image"], ex["image"][:, ::-1])
    np.testing.assert_array_equal(f["masks"], ex["masks"][:, :, ::-1])
    np.testing.assert_array_equal(f["panoptic"], ex["panoptic"][:, ::-1])
    np.testing.assert_array_equal(f["normals"][..., 0], -ex["normals"][:, ::-1, 0])
    np.testing.assert_array_equal(f["normals"][..., 1:], ex["normals"][:, ::-1, 1:])
    n = int(ex["num_instances"])
    for i in range(n):   # flipped boxes are still the tight boxes of the flipped masks
      ys, xs = np.nonzero(f["masks"][i])
      np.testing.assert_array_equal(f["boxes"][i], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    # Slots keep their meaning: square slot 0 (up-left) is left of slot 1 (up-right), and so on.
    for i in range(n):
      kind = CFG.classes.kind_of(int(f["classes"][i]))
      kp = f["keypoints"][i]
      if kind == "square" and kp[0, 2] and kp[1, 2]:
        assert kp[0, 0] <= kp[1, 0]
      if kind == "triangle" and kp[1, 2] and kp[2, 2]:
        assert kp[1, 0] <= kp[2, 0]
      orig = ex["keypoints"][i]
      perm = list(FLIP_PERM[int(ex["classes"][i])])
      present = orig[perm, 2] > 0
      np.testing.assert_allclose(kp[present, 0], w - orig[perm][present, 0])
    back = augment.hflip(f, FLIP_PERM)
    for k in ex:
      np.testing.assert_array_equal(back[k], ex[k], err_msg=k)


def test_scale_by_two_is_exact(examples):
  for ex in examples:
    s = augment.scale(ex, 2.0)
    _check_consistent(s)
    np.testing.assert_array_equal(s["masks"], ex["masks"].repeat(2, 1).repeat(2, 2))
    np.testing.assert_array_equal(s["semantic"], ex["semantic"].repeat(2, 0).repeat(2, 1))
    np.testing.assert_array_equal(s["depth"], ex["depth"].repeat(2, 0).repeat(2, 1))   # values kept
    np.testing.assert_array_equal(s["normals"], ex["normals"].repeat(2, 0).repeat(2, 1))
    n = int(ex["num_instances"])
    np.testing.assert_array_equal(s["boxes"][:n], ex["boxes"][:n] * 2)
    assert s["image"].dtype == np.float32 and s["image"].shape == (96, 96, 3)


@pytest.mark.parametrize("factor", [0.5, 0.77, 1.37])
def test_scale_keeps_labels_consistent(examples, factor):
  for ex in examples:
    s = augment.scale(ex, factor)
    assert s["semantic"].shape == (round(48 * factor),) * 2
    _check_consistent(s, box_tol=1.0, kp_tol=0.5 + 1 / factor)
    assert set(np.unique(s["semantic"])) <= set(np.unique(ex["semantic"]))


def test_crop_with_padding(examples):
  ex = examples[0]
  c = augment.crop(ex, -5, 10, (40, 60))
  _check_consistent(c)
  assert c["image"].shape == (40, 60, 3)
  # Inside: a shifted copy; outside: the documented padding.
  np.testing.assert_array_equal(c["semantic"][5:, :38], ex["semantic"][:35, 10:48])
  assert np.all(c["semantic"][:5] == 255) and np.all(c["semantic"][:, 38:] == 255)
  for key in ("image", "depth", "normals", "panoptic", "masks"):
    arr = c[key] if key != "masks" else c[key].transpose(1, 2, 0)
    assert not arr[:5].any() and not arr[:, 38:].any(), key
  n = int(c["num_instances"])
  for i in range(n):
    j = [k for k in range(int(ex["num_instances"])) if ex["classes"][k] == c["classes"][i]]
    assert j  # rows come from the original instances


def test_crop_drops_instances_that_leave_and_compacts(examples):
  for ex in examples:
    n = int(ex["num_instances"])
    c = augment.crop(ex, 0, 0, (20, 20))
    _check_consistent(c)
    kept = [i for i in range(n) if ex["masks"][i][:20, :20].any()]
    assert int(c["num_instances"]) == len(kept)
    np.testing.assert_array_equal(c["classes"][:len(kept)], ex["classes"][kept])
    np.testing.assert_array_equal(c["masks"][:len(kept)], ex["masks"][kept][:, :20, :20])
    # Keypoints outside the window are absent.
    kp = c["keypoints"][:len(kept)]
    assert np.all((kp[..., 2] == 0) | ((kp[..., 0] < 20) & (kp[..., 1] < 20)))


def test_crop_entirely_outside_leaves_only_padding(examples):
  c = augment.crop(examples[1], 100, 100, (16, 16))
  assert int(c["num_instances"]) == 0 and np.all(c["semantic"] == 255) and not c["masks"].any()


def test_photometric_touches_only_the_image(examples):
  ex = augment.to_float_image(examples[2])
  rng = np.random.default_rng(0)
  out = augment.random_augment(ex, rng, (48, 48), augment.AugmentConfig(scale_range=(1.0, 1.0), flip_prob=0.0))
  for k in ex:
    if k != "image":
      np.testing.assert_array_equal(out[k], ex[k], err_msg=k)
  assert not np.allclose(out["image"], ex["image"])
  assert out["image"].min() >= 0 and out["image"].max() <= 1


@pytest.mark.parametrize("seed", range(6))
def test_random_augment_is_consistent_and_deterministic(examples, seed):
  ex = examples[seed]
  a = augment.random_augment(ex, np.random.default_rng(seed), (40, 40), keypoint_flip_perm=FLIP_PERM)
  b = augment.random_augment(ex, np.random.default_rng(seed), (40, 40), keypoint_flip_perm=FLIP_PERM)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
    assert a[k].dtype == (np.float32 if k == "image" else ex[k].dtype), k
  assert a["image"].shape == (40, 40, 3) and a["masks"].shape == (CFG.max_instances, 40, 40)
  _check_consistent(a, box_tol=1.0, kp_tol=0.5 + 1 / 0.75)


def test_a_per_example_scalar_passes_through_untouched(examples):
  """`image_id` (a COCO loader's int32 scalar) leaves every transform as it came."""
  ex = dict(examples[0], image_id=np.asarray(397133, np.int32))
  rng = np.random.default_rng(0)
  outs = [augment.random_augment(ex, rng, (40, 40), augment.AugmentConfig(flip_prob=1.0),
                                 keypoint_flip_perm=FLIP_PERM),
          augment.eval_transform(ex, (32, 32)), augment.crop(ex, 30, 30, (40, 40)), augment.scale(ex, 0.5)]
  for out in outs:
    assert out["image_id"] == 397133 and out["image_id"].dtype == np.int32 and out["image_id"].shape == ()


def test_an_image_without_instances(examples):
  """COCO keeps images without annotations (num_instances 0): cropping and augmenting them works."""
  ex = dict(examples[0], num_instances=np.asarray(0, np.int32))
  ex["masks"] = np.zeros_like(ex["masks"])
  out = augment.random_augment(ex, np.random.default_rng(0), (40, 40), keypoint_flip_perm=FLIP_PERM)
  assert out["num_instances"] == 0 and not out["masks"].any()
  assert augment.crop(ex, 8, 8, (40, 40))["num_instances"] == 0


def test_eval_transform_resizes_keeping_aspect_and_pads(examples):
  ex = examples[3]
  wide = augment.crop(ex, 0, 0, (24, 48))
  out = augment.eval_transform(wide, (32, 32))
  assert out["image"].shape == (32, 32, 3) and out["image"].dtype == np.float32
  assert np.all(out["semantic"][16:] == 255) and np.all(out["semantic"][:16] != 255)
  same = augment.eval_transform(ex, (48, 48))
  np.testing.assert_array_equal(same["semantic"], ex["semantic"])
  np.testing.assert_allclose(same["image"], ex["image"] / 255.0)


def test_eval_resized_size_is_the_eval_transforms_content_and_point_map():
  """A (40, 60) image at (80, 80): f = 4/3, content (53, 80) (by hand), the rest padding; a keypoint maps by
  (sy, sx) = (53 / 40, 80 / 60), the factors the COCO results JSON divides by."""
  assert augment.eval_resized_size((40, 60), (80, 80)) == (53, 80)
  ex = {"image": np.full((40, 60, 3), 255, np.uint8), "semantic": np.ones((40, 60), np.int32),
        "keypoints": np.array([[[30.0, 20.0, 2.0]]], np.float32), "classes": np.array([1], np.int32),
        "num_instances": np.asarray(1, np.int32)}
  out = augment.eval_transform(ex, (80, 80))
  assert np.all(out["semantic"][:53] == 1) and np.all(out["semantic"][53:] == 255)
  np.testing.assert_allclose(out["keypoints"][0, 0], [30.0 * 80 / 60, 20.0 * 53 / 40, 2.0], rtol=1e-6)


def test_bilinear_resize_matches_a_float64_reference():
  rng = np.random.default_rng(0)
  img = rng.uniform(size=(5, 7, 2))
  out = augment.resize_bilinear(img, (9, 4))
  # Reference: half-pixel centres, clamped at the border, written out per output pixel.
  ref = np.zeros((9, 4, 2))
  for i in range(9):
    for j in range(4):
      y = min(max((i + 0.5) * 5 / 9 - 0.5, 0), 4)
      x = min(max((j + 0.5) * 7 / 4 - 0.5, 0), 6)
      y0, x0 = int(y), int(x)
      y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
      fy, fx = y - y0, x - x0
      ref[i, j] = ((1 - fy) * (1 - fx) * img[y0, x0] + (1 - fy) * fx * img[y0, x1]
                   + fy * (1 - fx) * img[y1, x0] + fy * fx * img[y1, x1])
  np.testing.assert_allclose(out, ref, atol=1e-6)


def test_bad_example_raises():
  with pytest.raises(ValueError, match="example"):
    augment.scale({"boxes": np.zeros((2, 4))}, 2.0)


@pytest.mark.parametrize("scaled,y0,x0", [((60, 60), 5, -3), ((30, 41), -4, 2), ((48, 48), 0, 0), ((96, 96), 50, 60)])
def test_fused_resize_crop_equals_resize_then_crop(examples, scaled, y0, x0):
  ex = augment.to_float_image(examples[4])
  fused = augment.resize_crop(ex, scaled, y0, x0, (40, 40))
  two_step = augment.crop(augment.resize(ex, scaled), y0, x0, (40, 40))
  for k in ex:
    np.testing.assert_allclose(fused[k], two_step[k], atol=1e-6, err_msg=k)
  _check_consistent(fused, box_tol=1.0, kp_tol=0.5 + 48 / min(scaled))


@pytest.mark.parametrize("kwargs,match", [(dict(scale_range=(0.0, 1.0)), "scale_range"),
                                          (dict(scale_range=(2.0, 1.0)), "scale_range"),
                                          (dict(flip_prob=1.5), "flip_prob"),
                                          (dict(contrast=-0.1), "contrast")])
def test_bad_augment_config(kwargs, match):
  with pytest.raises(ValueError, match=match):
    augment.AugmentConfig(**kwargs)


def _project(k, p):
  """Continuous pixel coordinates (u, v) of camera-frame points p (..., 3) under intrinsics k."""
  q = p @ np.asarray(k, np.float64).T
  return q[..., :2] / q[..., 2:]


def _points(ex):
  """Camera-frame 3-D point (S, S, 3) each pixel centre sees: depth * K^-1 (j + 0.5, i + 0.5, 1)."""
  h, w = ex["depth"].shape
  v, u = np.mgrid[0:h, 0:w] + 0.5
  rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(ex["intrinsics"].astype(np.float64)).T
  return ex["depth"][..., None].astype(np.float64) * rays


def test_intrinsics_follow_flip_crop_and_scale(examples):
  """The 3-D point a source pixel sees projects, with the new intrinsics, onto where that pixel went;
  a flip mirrors the scene (x -> -x, normals' x negated), so the mirrored point lands on the mirror pixel."""
  ex = examples[0]
  pts = _points(ex)
  h, w = ex["depth"].shape
  v, u = np.mgrid[0:h, 0:w] + 0.5
  # Scale by 2 (each pixel becomes a 2x2 block whose centre is 2 (u, v)).
  s = augment.scale(ex, 2.0)
  np.testing.assert_allclose(_project(s["intrinsics"], pts), np.stack([2 * u, 2 * v], -1), atol=1e-3)
  # Crop at (y0, x0) = (5, -3) (padding on the left): pixels move by (-5, +3).
  c = augment.crop(ex, 5, -3, (30, 40))
  np.testing.assert_allclose(_project(c["intrinsics"], pts), np.stack([u + 3, v - 5], -1), atol=1e-4)
  np.testing.assert_allclose(_points(c)[0, 3:], pts[5, :37], rtol=1e-5)       # same 3-D points
  # Flip (of the crop, whose principal point is off-centre; a centred one is its own mirror): the
  # mirrored scene point (-X, Y, Z) lands on the mirrored pixel, and the points the flipped example
  # back-projects are the mirrored ones.
  f = augment.hflip(c)
  mirrored = _points(c) * [-1, 1, 1]
  vc, uc = np.mgrid[0:30, 0:40] + 0.5
  np.testing.assert_allclose(_project(f["intrinsics"], mirrored[:, 3:]), np.stack([40 - uc, vc], -1)[:, 3:],
                             atol=1e-4)
  np.testing.assert_allclose(_points(f), mirrored[:, ::-1], rtol=1e-5, atol=1e-5)
  assert s["intrinsics"].dtype == c["intrinsics"].dtype == f["intrinsics"].dtype == np.float32


def test_flipped_normals_match_the_flipped_geometry(examples):
  """After a crop and a flip, normals from the back-projected depth (with the new intrinsics) still agree
  with the normals label on a plane (the ground / backdrop of the scene): the flip's x negation and the
  new c_x are consistent."""
  ex = augment.hflip(augment.crop(examples[1], 4, 2, (40, 40)))   # c_x off-centre before the flip
  p = _points(ex)
  tu, tv = p[1:-1, 2:] - p[1:-1, :-2], p[2:, 1:-1] - p[:-2, 1:-1]
  cross = np.cross(tu, tv)
  est = np.stack([-cross[..., 0], -cross[..., 1], cross[..., 2]], -1)
  est /= np.linalg.norm(est, axis=-1, keepdims=True)
  lab = ex["normals"][1:-1, 1:-1].astype(np.float64)
  # Pixels of one stuff plane: the label normal equals its 8 neighbours' (planes have one normal).
  same = np.ones(lab.shape[:2], bool)
  n = ex["normals"].astype(np.float64)
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      same &= np.all(np.abs(n[1 + dy:n.shape[0] - 1 + dy, 1 + dx:n.shape[1] - 1 + dx] - lab) < 1e-6, -1)
  same &= ex["semantic"][1:-1, 1:-1] < 4          # stuff (small_64 classes 0-3)
  assert same.sum() > 200
  ang = np.degrees(np.arccos(np.clip(np.sum(est * lab, -1), -1, 1)))[same]
  assert ang.max() < 0.05
