"""`dense_jax.evaluation.tables` on a hand-made result: IoU, recall and share per class, n/a, the summary."""

import math

from dense_jax.evaluation.tables import format_metrics, format_table


def test_per_class_table_by_hand():
  result = {"class_names": ["background", "disc", "ring"],
            "confusion_matrix": [[6, 2, 0], [0, 2, 0], [0, 0, 0]],   # 10 pixels; 'ring' absent
            "per_class_iou": {"background": 0.75, "disc": 0.5, "ring": math.nan},
            "miou": 0.625, "pixel_accuracy": 0.8, "mean_accuracy": 0.875}
  lines = format_table(result).splitlines()
  assert lines[0].split() == ["class", "IoU", "accuracy", "share"]
  assert lines[1].split() == ["background", "0.7500", "0.7500", "80.00%"]   # recall 6/8, share 8/10
  assert lines[2].split() == ["disc", "0.5000", "1.0000", "20.00%"]
  assert lines[3].split() == ["ring", "n/a", "n/a", "0.00%"]
  assert lines[4] == "mIoU 0.6250   pixel accuracy 0.8000   mean accuracy 0.8750"


def test_other_metrics_one_per_line():
  text = format_metrics({"depth/abs_rel": 0.12345, "instances/count": 3})
  assert text.splitlines() == [f"{'depth/abs_rel':<40}{0.12345:10.4f}", f"{'instances/count':<40}3"]
