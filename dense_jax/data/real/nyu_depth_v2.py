"""NYU Depth v2, the labelled 1449 frames ('nyu_depth_v2'): RGB, depth in metres, 40-class semantic.

Where to get the files (download them yourself):
  http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat   (2.8 GB)
  http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat               (the 795 / 654 split)
  classMapping40.mat, the 894 -> 40 class mapping of Gupta, Arbelaez & Malik (CVPR 2013), distributed
  with their code and in https://github.com/ankurhanda/nyuv2-meta-data (variable `mapClass`, 1 x 894)

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/nyu_depth_v2`, else
`~/dense_jax_data/nyu_depth_v2`):
  nyu_depth_v2_labeled.mat   splits.mat   classMapping40.mat
The TFDS catalog's `nyu_depth_v2` downloads a different, depth-only release, so it cannot run offline;
this source reads the .mat file directly with h5py (nothing to prepare).

The labelled .mat is MATLAB v7.3, i.e. HDF5, and MATLAB stores arrays column-major, so h5py sees them
with the axes reversed: `images` (1449, 3, 640, 480) uint8, `depths` (1449, 640, 480) float32,
`labels` (1449, 640, 480) uint16. Example i is `images[i].transpose(2, 1, 0)` -> (480, 640, 3), and
`depths[i].T`, `labels[i].T` -> (480, 640).

Splits: train = `trainNdxs`, test = `testNdxs` of splits.mat (1-based frame numbers), in that order.
depth (float32, metres): the `depths` array as released (the authors' in-painted Kinect depth, so there
are no holes; 0 would mean invalid).
semantic (int32): `labels` holds 0 = unlabelled and 1..894 = the raw classes; class k becomes
mapClass[k - 1] - 1 in 0..39 (`CLASS_NAMES`, Gupta's order), unlabelled -> 255.
Bad input: a truncated or damaged .mat raises UnreadableFileError naming it (when the source is made, or
for a damaged frame when it is read); arrays missing or of inconsistent shapes, a mapClass outside
0..40, a frame whose depth is NaN, infinite or negative or whose labels exceed mapClass's 894 classes
raise BadLabelError naming the file and the frame.
"""

from __future__ import annotations

import io

import h5py
import numpy as np
import scipy.io

from dense_jax import paths
from dense_jax.data.real import _common
from dense_jax.data.sources import DatasetInfo, register_source

CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop")
LABELED = "nyu_depth_v2_labeled.mat"
_SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}

INFO = DatasetInfo(
    name="nyu_depth_v2", num_classes=40, class_names=CLASS_NAMES, keys=("image", "depth", "semantic"),
    splits=("train", "test"),
    description=("NYU Depth v2 labelled frames, 795 train / 654 test at 480x640, depth in metres, 40 classes. "
                 "Put nyu_depth_v2_labeled.mat, splits.mat (cs.nyu.edu/~silberman) and classMapping40.mat "
                 "(Gupta et al.) in $DENSE_JAX_DATA_DIR/nyu_depth_v2."))


class NyuDepthV2Source:
  """Random access to a split: {'image': uint8 (480, 640, 3), 'depth': float32, 'semantic': int32}.

  The HDF5 file is opened lazily in each process (the handle is not pickled), so grain workers can
  share the source.
  """

  def __init__(self, split: str, data_dir=None):
    root = _common.resolve_data_dir("nyu_depth_v2", data_dir)
    self._files = files = _common.Files("nyu_depth_v2", split, __name__)

    def require(name, what):
      return _common.require(root / name, what, "nyu_depth_v2", __name__)

    self._path = require(LABELED, "the labelled frames nyu_depth_v2_labeled.mat (MATLAB v7.3)")
    splits = _load_mat(files, require("splits.mat", "the official train/test split splits.mat"),
                       _SPLIT_KEYS[split])
    self._frames = np.asarray(splits).ravel().astype(np.int64) - 1  # 1-based in MATLAB
    mapping_path = require("classMapping40.mat", "Gupta et al.'s classMapping40.mat")
    map_class = np.asarray(_load_mat(files, mapping_path, "mapClass")).ravel().astype(np.int64)
    if map_class.size == 0 or map_class.min() < 0 or map_class.max() > 40:
      raise files.bad_label(mapping_path, None, "mapClass values in 0..40 (0 = unlabelled)",
                            f"{map_class.size} values" + (f" in {map_class.min()}..{map_class.max()}"
                                                          if map_class.size else ""))
    self._table = np.full((map_class.size + 1,), 255, np.int32)
    self._table[1:] = np.where(map_class >= 1, map_class - 1, 255)
    self._file = None
    try:
      data = self._h5()
      shapes = {key: data[key].shape for key in ("images", "depths", "labels")}
    except (OSError, KeyError) as e:   # h5py: OSError for a truncated file, KeyError for a missing array
      self._file = None
      if isinstance(e, KeyError):
        raise files.bad_label(self._path, None, "the arrays images, depths and labels",
                              f"only {sorted(data)}") from None
      raise files.unreadable(self._path, None, e) from e
    images = shapes["images"]
    if len(images) != 4 or images[1] != 3 or not shapes["depths"] == shapes["labels"] == images[:1] + images[2:]:
      raise files.bad_label(self._path, None, "images (N, 3, W, H), depths and labels (N, W, H) as MATLAB "
                            "stores its H x W x 3 x N arrays", shapes)
    count = images[0]
    if self._frames.size and not 0 <= self._frames.min() <= self._frames.max() < count:
      raise ValueError(f"nyu_depth_v2: splits.mat {_SPLIT_KEYS[split]} must hold frame numbers in 1..{count}, "
                       f"got {self._frames.min() + 1}..{self._frames.max() + 1}")

  def _h5(self) -> h5py.File:
    if self._file is None:
      # h5py reads a local path itself and a remote file through the path layer's file object.
      self._file = h5py.File(self._path.open("rb") if paths.is_remote(self._path) else self._path, "r")
    return self._file

  def __getstate__(self):
    return {**self.__dict__, "_file": None}

  def __len__(self) -> int:
    return int(self._frames.size)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    frame, example = int(self._frames[index]), f"frame {int(self._frames[index]) + 1} (example {index})"
    try:
      data = self._h5()
      image = np.ascontiguousarray(data["images"][frame].transpose(2, 1, 0), dtype=np.uint8)
      depth = np.ascontiguousarray(data["depths"][frame].T, dtype=np.float32)
      labels = data["labels"][frame].T
    except OSError as e:   # h5py: a chunk past the end of a truncated file, or a damaged one
      raise self._files.unreadable(self._path, example, e) from e
    if not np.isfinite(depth).all() or depth.min(initial=0) < 0:
      bad = ~np.isfinite(depth) | (depth < 0)
      raise self._files.bad_label(self._path, example, "finite depths >= 0 (metres)",
                                  f"{int(bad.sum())} pixels such as {depth[bad][:5].tolist()}")
    self._files.check_label(labels, image.shape, range(self._table.size), self._path, example,
                            "raw class ids (0 = unlabelled)")
    return {"image": image, "depth": depth, "semantic": self._table[labels]}


def _load_mat(files: _common.Files, path: paths.Path, key: str) -> np.ndarray:
  """Array `key` of a MATLAB (< v7.3) file; UnreadableFileError / BadLabelError naming it."""
  try:
    contents = scipy.io.loadmat(io.BytesIO(path.read_bytes()))
  except (ValueError, TypeError, OSError, EOFError) as e:   # scipy's errors for truncated files
    raise files.unreadable(path, None, e) from e
  if key not in contents:
    raise files.bad_label(path, None, f"a variable {key!r}",
                          f"only {sorted(k for k in contents if not k.startswith('__'))}")
  return contents[key]


make_source = NyuDepthV2Source

register_source(INFO, make_source)
