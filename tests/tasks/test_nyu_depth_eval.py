"""NYU Depth v2 through the depth task with the Eigen crop: small fake files (48x64, a tenth of the
real 480x640), the loader, the pipeline and the one evaluation loop, against float64 NumPy."""

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import scipy.io

from dense_jax import data, evaluation, tasks
from dense_jax.metrics import depth as depth_metrics

N, H, W = 3, 48, 64


def _write(root):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
  depths = rng.uniform(0.5, 12.0, (N, H, W)).astype(np.float32)   # some beyond NYU's 10 m: invalid
  depths[:, 10, 10:20] = 0.0                                        # missing depth
  labels = rng.integers(0, 895, (N, H, W)).astype(np.uint16)
  with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
    f["images"] = images.transpose(0, 3, 2, 1)
    f["depths"] = depths.transpose(0, 2, 1)
    f["labels"] = labels.transpose(0, 2, 1)
  scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1]]), "testNdxs": np.array([[2], [3]])})
  scipy.io.savemat(root / "classMapping40.mat", {"mapClass": ((np.arange(1, 895) % 40) + 1)[None].astype(float)})
  return depths


def test_nyu_test_split_with_the_eigen_crop(tmp_path):
  depths = _write(tmp_path)
  info = data.dataset_info("nyu_depth_v2")
  task = tasks.build_tasks({"depth": {"eval_crop": "eigen"}}, info)["depth"]
  assert task.max_depth == 10.0 and task.min_depth == 1e-3   # NYU's range by default
  it = data.create_iterator("nyu_depth_v2", "test", global_batch_size=4, seed=0, train=False,
                            data_dir=str(tmp_path), keys=tasks.build.batch_keys({"depth": task}))
  # A fake model: the log-depth of a tilted plane (rows 1..4 m), whatever the image.
  plane = np.broadcast_to(np.linspace(1.0, 4.0, H)[:, None], (H, W)).astype(np.float32)
  step = jax.jit(evaluation.make_eval_step(None, {"depth": task}, predict_fn=lambda _, images: {
      "depth": jnp.broadcast_to(jnp.log(plane), images.shape[:3])}))
  accs, examples = evaluation.run(step, None, it, {"depth": task})
  it.close()
  got = task.result(accs["depth"])
  assert examples == 2
  gt = depths[1:].astype(np.float64)                     # testNdxs 2, 3 -> frames 1, 2
  crop = depth_metrics.eigen_crop_mask(H, W)             # rows 4.5:47.1 -> 4:47, columns 4:60 at 1/10
  assert crop.sum() == (47 - 4) * (60 - 4)
  valid = np.broadcast_to(crop, gt.shape) & (gt > 1e-3) & (gt <= 10.0)
  pred = np.broadcast_to(plane, gt.shape).astype(np.float64)
  # The float64 formula by hand for abs_rel and delta1, per image then averaged over images.
  abs_rel = np.mean([np.mean(np.abs(pred[i] - gt[i])[valid[i]] / gt[i][valid[i]]) for i in range(2)])
  with np.errstate(divide="ignore"):   # gt = 0 at the missing pixels, which `valid` leaves out
    delta1 = np.mean([np.mean((np.maximum(pred[i] / gt[i], gt[i] / pred[i]) < 1.25)[valid[i]])
                      for i in range(2)])
  np.testing.assert_allclose(got["depth/abs_rel"], abs_rel, rtol=1e-5)
  np.testing.assert_allclose(got["depth/delta1"], delta1, rtol=1e-5)
  want = depth_metrics.depth_errors(pred, gt, valid=np.broadcast_to(crop, gt.shape))
  for key, value in want.items():
    np.testing.assert_allclose(got[f"depth/{key}"], value, rtol=2e-5, err_msg=key)
  # Without the crop the border rows count too: a different number.
  no_crop = tasks.build_tasks({"depth": {}}, info)["depth"]
  totals = no_crop.update(no_crop.init(), {"depth": jnp.log(jnp.asarray(pred, jnp.float32))},
                          {"depth": gt.astype(np.float32), "batch_mask": np.ones(2, np.float32)})
  assert abs(no_crop.result(jax.device_get(totals))["depth/abs_rel"] - got["depth/abs_rel"]) > 1e-4
