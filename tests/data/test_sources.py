"""`dense_jax.data.sources`: one registration per name (another source under a taken name is refused),
every real dataset listed by `available()` without importing `dense_jax.data.real` by hand, and the
batch contract's check of `original_size` ((B, 2) ints, >= 1 for real examples, (0, 0) on padding)."""


import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dense_jax.data import sources
from dense_jax.data.sources import check_original_sizes

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
REAL = ["ade20k", "cityscapes", "cityscapes_panoptic", "coco2017", "coco2017_instances", "coco2017_panoptic",
        "nyu_depth_v2", "oxford_iiit_pet", "voc2012", "voc2012_sbd"]


def _info(name, **kwargs):
  return sources.DatasetInfo(name=name, num_classes=2, class_names=("a", "b"), keys=("image",),
                             splits=("train",), **kwargs)


def _factory(split, data_dir=None):
  return [split]


def test_a_taken_name_is_refused_for_another_source():
  sources.register_source(_info("sources_test_taken"), _factory)
  sources.register_source(_info("sources_test_taken"), _factory)   # the same again: harmless
  assert sources.get_source("sources_test_taken", "train") == ["train"]
  with pytest.raises(ValueError, match="dataset name 'sources_test_taken' is already registered"):
    sources.register_source(_info("sources_test_taken"), lambda split, data_dir=None: [])
  with pytest.raises(ValueError, match="dataset name 'sources_test_taken' is already registered"):
    sources.register_source(_info("sources_test_taken", ignore_label=0), _factory)   # another info
  with pytest.raises(ValueError, match="dataset name 'voc2012' is already registered"):
    sources.register_source(_info("voc2012"), _factory)
  assert sources.get_source("sources_test_taken", "train") == ["train"]   # the first one kept


def test_every_real_dataset_is_found_without_importing_the_package():
  code = ("import sys\nfrom dense_jax.data import sources\nnames = sources.available()\n"
          "print(' '.join(n for n in names if '/' not in n and '+' not in n))\n"
          "print(sorted(m for m in sys.modules if m.startswith('dense_jax.data.real.')))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT)), timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = proc.stdout.splitlines()[0].split()
  assert sorted(names) == REAL
  assert "dense_jax.data.real.voc" in proc.stdout.splitlines()[1]
  assert sources.dataset_info("coco2017").name == "coco2017"


def test_check_original_sizes():
  out = check_original_sizes(np.asarray([[40, 60], [0, 0]], np.int32), np.asarray([True, False]))
  assert out.dtype == np.int64
  np.testing.assert_array_equal(out, [[40, 60], [0, 0]])
  with pytest.raises(ValueError, match=r"batch\['original_size'\]: expected sizes >= 1"):
    check_original_sizes(np.asarray([[40, 60], [0, 80]]), np.asarray([True, True]))
  with pytest.raises(ValueError, match=r"batch\['original_size'\]: expected \(2, 2\) \(h, w\)"):
    check_original_sizes(np.asarray([[40.0, 60.0], [1.0, 1.0]]), np.asarray([True, True]))
  with pytest.raises(ValueError, match=r"got shape \(2,\)"):
    check_original_sizes(np.asarray([40, 60]), np.asarray([True, True]))
