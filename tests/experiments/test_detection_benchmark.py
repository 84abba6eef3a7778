"""experiments/benchmarks/detection.py in smoke mode: the rows it returns (keys, positive times, FLOPs equal to
XLA's cost analysis, our stages against the whole step), the `--json` file and its machine record.

Our (JAX) side always runs; torchvision's rows are filled and checked only where torchvision imports. The
device mode's code path runs too, on the CPU, for one model.
"""

import importlib.util
import json
import math

import jax
import jax.numpy as jnp
import pytest

from experiments.benchmarks import detection, table, timing

MACHINE_KEYS = {"cpu_count", "load_average", "backend", "device_kind", "device_count", "jax", "torch", "git_commit"}


def _positive(x) -> bool:
  return isinstance(x, float) and math.isfinite(x) and x > 0


def _check_machine(record: dict) -> None:
  assert MACHINE_KEYS <= set(record), record
  assert record["cpu_count"] >= 1 and len(record["load_average"]) == 3
  assert record["jax"] == jax.__version__ and record["device_kind"] == jax.devices()[0].device_kind
  assert (record["torch"] is not None) == (importlib.util.find_spec("torch") is not None)


@pytest.mark.slow
def test_smoke_rows(tmp_path, capsys):
  torch_here = importlib.util.find_spec("torchvision") is not None
  path = tmp_path / "detection.json"
  rows = detection.main(["--smoke", "--json", str(path)])
  out = capsys.readouterr().out
  assert "## 1." in out and "## 2." in out   # the tables print from the rows

  speed = {r["pass"]: r for r in table.select(rows, table="speed")}
  assert set(speed) == {"train step", "inference"}
  for r in speed.values():
    assert _positive(r["ours_images_per_s"]) and _positive(r["ours_ms"]), r
    assert abs(r["ours_ms"] - 1e3 * r["batch"] / r["ours_images_per_s"]) < 1e-6 * r["ours_ms"]
    assert _positive(r["torchvision_images_per_s"]) == torch_here, r
    assert (r["ratio"] is not None) == torch_here
  train = speed["train step"]
  assert math.isfinite(train["loss_after"])
  # FLOPs are XLA's cost analysis of the same compiled step.
  model = detection.build("maskrcnn_resnet50_fpn", True)
  batch = jax.tree.map(jnp.asarray, detection.batch_for(model, 2, (64, 64)))
  variables = detection.random_variables(model, (2, 64, 64, 3))
  _, compiled, _ = detection.jax_train(model, variables, detection.tasks_for(model), batch)
  assert _positive(train["flops"]) and train["flops"] == timing.flops_of(compiled)
  assert train["gflop_per_s"] == pytest.approx(train["flops"] / train["ours_ms"] / 1e6)

  parts = table.select(rows, table="parts", side="ours")
  got = {(r["stage"], r["pass"]) for r in parts}
  for key, _, _, trains in detection.TRAIN_PARTS:
    assert (key, "fwd") in got and (((key, "fwd+bwd") in got) == trains), key
  for key, _, _ in detection.EVAL_PARTS:
    assert (key, "fwd") in got, key
  assert {"table", "side", "stage", "label", "phase", "module", "pass", "ms"} <= set(parts[0])
  assert all(_positive(r["ms"]) for r in parts), parts
  assert bool(table.select(rows, table="parts", side="torch")) == torch_here
  sums = table.select(rows, table="stage_sums")[0]
  assert sums["ours_train_sum_ms"] == pytest.approx(detection.stage_sums(rows)["train"])
  # Each stage is a part of the step: their forward passes alone sum to about the step or less (each stage
  # pays its own dispatch and fusion boundaries, so allow a margin on a shared 2-core machine).
  fwd_sum = sum(r["ms"] for r in parts if r["phase"] == "train" and r["pass"] == "fwd")
  assert fwd_sum <= 3.0 * sums["ours_train_step_ms"], (fwd_sum, sums)
  ms = {(r["stage"], r["pass"]): r["ms"] for r in parts}
  assert ms[("detect_box", "fwd")] + ms[("detect_mask", "fwd")] <= 3.0 * ms[("detect", "fwd")]
  counts = {r["name"]: r["value"] for r in table.select(rows, table="counts")}
  assert counts["mask RoI slots / image"] == model.head_slots
  assert counts["box RoIs / image"] == model.box_batch_size_per_image

  written = json.loads(path.read_text())
  assert set(written) == {"machine", "rows"} and len(written["rows"]) == len(rows)
  _check_machine(written["machine"])

  rows = detection.main(["--smoke", "--device-mode", "--models", "maskrcnn_resnet50_fpn"])
  peak = table.select(rows, table="peak")[0]
  assert _positive(peak["flop_per_s"]) and peak["n"] == 1024
  device = table.select(rows, table="device")
  assert [r["model"] for r in device] == ["maskrcnn_resnet50_fpn_narrow"]
  r = device[0]
  assert "error" not in r, r
  for key in ("step_ms", "images_per_s", "flops", "tflop_per_s", "of_peak", "xla_peak_gb"):
    assert _positive(r[key]), (key, r)
  assert r["tflop_per_s"] == pytest.approx(r["flops"] / r["step_ms"] * 1e3 / 1e12)
  assert r["of_peak"] == pytest.approx(r["tflop_per_s"] * 1e12 / peak["flop_per_s"])
  d2 = table.select(rows, table="detectron2")[0]
  assert d2["ours_images_per_s"] == r["images_per_s"] and _positive(d2["per_flop_of_peak_vs_v100_fp16"])


def test_machine_record_and_table():
  _check_machine(timing.machine())
  rows = [{"a": 1, "b": 2.5}, {"a": 2, "c": None}]
  text = table.markdown(rows, title="## t")
  assert text.splitlines() == ["## t", "| a | b | c |", "|---|---|---|", "| 1 | 2.500 | - |", "| 2 | - | - |"]
  ms = timing.median_ms({"x": lambda: None, "y": lambda: sum(range(1000))}, repeats=3)
  assert set(ms) == {"x", "y"} and all(v >= 0 for v in ms.values())
