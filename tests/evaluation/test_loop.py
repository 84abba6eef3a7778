"""`dense_jax.evaluation.loop`, the one evaluation loop: the workdir evaluation, the trainer's `val/miou`
and `experiments/evaluate_breakdown` agree exactly on the tiny U-Net of conftest.py."""

import pytest

from tests.evaluation.conftest import tiny_config


def test_evaluate_trainer_and_breakdown_report_the_same_miou(trained):
  """The workdir evaluation, the trainer's `val/miou` and `experiments/evaluate_breakdown` (its semantic
  task with the breakdown regions) agree exactly."""
  from dense_jax.evaluation.workdir import evaluate
  from dense_jax.tools import restore
  from experiments import evaluate_breakdown
  workdir, final = trained
  config = tiny_config()
  result = evaluate(config, workdir, mode="whole", write=False, verbose=False)
  model, _, _ = restore.build_model(config)
  _, variables = restore.restore_variables(config, workdir)
  breakdown, examples = evaluate_breakdown.breakdown_metrics_for_run(
      config, model, variables, dict(band_radius=1, small_area=20))
  assert examples == result["examples"] == 12
  assert result["miou"] == final["val/miou"] == breakdown["miou"]
  assert result["pixel_accuracy"] == final["val/pixel_accuracy"] == breakdown["pixel_accuracy"]
  # The regions partition the valid pixels: band + interior fractions sum to 1.
  assert breakdown["band/fraction"] + breakdown["interior/fraction"] == pytest.approx(1.0)
  assert {"small/miou", "large/miou"} <= set(breakdown)
