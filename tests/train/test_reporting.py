"""What a run writes: metrics.jsonl (merged per step, truncated on resume), TensorBoard events,
prediction figures; and nothing at all on processes other than 0."""

import json

import numpy as np
import pytest

from dense_jax.train import reporting


def test_metrics_jsonl_and_truncation_on_resume(tmp_path):
  r = reporting.Reporter(tmp_path, enabled=True, total_steps=10, start_step=0, tensorboard=False)
  for step in (1, 2, 3):
    r.write(step, {"loss": np.float32(step), "val/miou": 0.5})
  r.close()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines == [{"step": s, "loss": float(s), "val/miou": 0.5} for s in (1, 2, 3)]
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "loss"')                       # a line cut short by a kill
  reporting.Reporter(tmp_path, enabled=True, total_steps=10, start_step=2, tensorboard=False).close()
  assert [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_disabled_reporter_writes_nothing(tmp_path):
  r = reporting.Reporter(tmp_path / "w", enabled=False, total_steps=10, start_step=0)
  r.write(1, {"loss": 1.0})
  assert r.figure(1, np.zeros((4, 12, 3), np.uint8)) is None
  assert not (tmp_path / "w").exists()


def test_tensorboard_events_and_figure(tmp_path):
  tf = pytest.importorskip("tensorflow")
  from tensorflow.core.util import event_pb2
  r = reporting.Reporter(tmp_path, enabled=True, total_steps=10, start_step=0, tensorboard=True)
  r.write(5, {"loss": 0.25, "val/miou": 0.75, "note": "text is not a scalar"})
  images = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
  labels = np.full((2, 8, 8), 255, np.int32)
  labels[:, 2:6, 2:6] = 1
  grid = reporting.prediction_grid(images, labels, np.ones((2, 8, 8), np.int32), num_classes=3)
  assert grid.shape == (16, 24, 3) and grid.dtype == np.uint8
  assert np.all(grid[0, 8:16] == 0)                      # ignore pixels are drawn black
  path = r.figure(5, grid)
  r.close()
  assert path.exists() and path.name == "val_step_000005.png"
  tags = {}
  for event_file in (tmp_path / "tensorboard").iterdir():
    for record in tf.data.TFRecordDataset(str(event_file)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        tags[value.tag] = (event.step, value.metadata.plugin_data.plugin_name, value.tensor)
  assert tags["loss"][:2] == (5, "scalars") and tags["val/miou"][:2] == (5, "scalars")
  np.testing.assert_allclose(tf.make_ndarray(tags["val/miou"][2]), 0.75)
  assert tags["val/predictions"][:2] == (5, "images") and "note" not in tags


def test_prediction_grid_centres_smaller_label_maps():
  images = np.zeros((1, 8, 8, 3), np.float32)
  grid = reporting.prediction_grid(images, np.zeros((1, 4, 4), np.int32), np.zeros((1, 4, 4), np.int32), 2)
  truth = grid[:, 8:16]
  assert np.all(truth[2:6, 2:6] == reporting.palette(2)[0]) and np.all(truth[0] == 0)
