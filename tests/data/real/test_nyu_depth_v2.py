"""NYU Depth v2 from a fake v7.3 (HDF5) .mat with MATLAB's transposed storage, splits and the 40 mapping."""

import pickle

import h5py
import numpy as np
import pytest
import scipy.io

import dense_jax.data.real  # noqa: F401  (registers the real datasets)
from dense_jax.data import sources

N, H, W = 4, 5, 7


def _write(root):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
  depths = rng.uniform(0.5, 10.0, (N, H, W)).astype(np.float32)
  labels = rng.integers(0, 895, (N, H, W)).astype(np.uint16)
  labels[:, 0, :4] = [0, 1, 40, 894]
  with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
    # MATLAB's H x W x 3 x N, column-major, reads back through h5py as N x 3 x W x H.
    f["images"] = images.transpose(0, 3, 2, 1)
    f["depths"] = depths.transpose(0, 2, 1)
    f["labels"] = labels.transpose(0, 2, 1)
  scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1], [3], [4]]), "testNdxs": np.array([[2]])})
  map_class = (np.arange(1, 895) % 40) + 1  # raw class k -> (k mod 40) + 1 in 1..40
  scipy.io.savemat(root / "classMapping40.mat", {"mapClass": map_class[None].astype(float)})
  return images, depths, labels


def test_frames_are_decoded_and_mapped(tmp_path):
  images, depths, labels = _write(tmp_path)
  train = sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))
  assert len(train) == 3 and len(sources.get_source("nyu_depth_v2", "test", data_dir=str(tmp_path))) == 1
  example = train[1]  # trainNdxs[1] = 3 -> frame index 2
  assert example["image"].shape == (H, W, 3) and example["image"].dtype == np.uint8
  np.testing.assert_array_equal(example["image"], images[2])
  assert example["depth"].dtype == np.float32
  np.testing.assert_array_equal(example["depth"], depths[2])
  semantic = example["semantic"]
  assert semantic.dtype == np.int32
  np.testing.assert_array_equal(semantic[0, :4], [255, 1, 0, 14])  # 0 -> ignore; 1 -> 2-1; 40 -> 1-1; 894 -> 15-1
  expected = np.where(labels[2] == 0, 255, labels[2].astype(np.int64) % 40)
  np.testing.assert_array_equal(semantic, expected)


def test_source_pickles_without_the_file_handle(tmp_path):
  images, _, _ = _write(tmp_path)
  source = sources.get_source("nyu_depth_v2", "test", data_dir=str(tmp_path))
  source[0]
  clone = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(clone[0]["image"], images[1])


def test_missing_files_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "nyu_depth_v2_labeled.mat")):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))
  _write(tmp_path)
  (tmp_path / "classMapping40.mat").unlink()
  with pytest.raises(FileNotFoundError, match="classMapping40.mat"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))


def test_bad_split_indices(tmp_path):
  _write(tmp_path)
  scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[9]]), "testNdxs": np.array([[1]])})
  with pytest.raises(ValueError, match="1..4"):
    sources.get_source("nyu_depth_v2", "train", data_dir=str(tmp_path))
