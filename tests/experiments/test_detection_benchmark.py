"""experiments/benchmarks/detection.py --smoke: every table prints, with finite numbers (no timing asserts).

Our (JAX) side always runs; torchvision's rows are filled and checked only where torchvision imports
(the script leaves them '-' otherwise). The device mode's code path runs too, on the CPU, for one model.
"""

import importlib.util
import math
import re

import pytest

from experiments.benchmarks import detection

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _rows(text: str, header: str) -> list[list[str]]:
  """The cells of the markdown table rows printed under the line starting with `header`."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header))
  rows = []
  for line in lines[start + 1:]:
    if line.startswith("#"):
      break
    if line.startswith("|") and not line.startswith("|---"):
      rows.append([c.strip() for c in line.strip().strip("|").split("|")])
  return rows


def _finite(cell: str) -> bool:
  values = [float(v) for v in NUMBER.findall(cell)]
  return bool(values) and all(math.isfinite(v) for v in values) and "nan" not in cell and "inf" not in cell


@pytest.mark.slow
def test_smoke_tables_print_finite_numbers(capsys):
  torch_here = importlib.util.find_spec("torchvision") is not None
  detection.main(["--smoke"])
  out = capsys.readouterr().out
  table1 = {r[0]: r for r in _rows(out, "## 1.")[1:]}
  assert set(table1) == {"train step", "inference"}
  for row in table1.values():
    assert _finite(row[1]), row
    assert _finite(row[2]) == torch_here and _finite(row[3]) == torch_here, row
  parts = {r[0]: r for r in _rows(out, "### ours, training")[1:]}
  for _, label, _, trains in detection.TRAIN_PARTS:
    assert _finite(parts[label][1]) and (_finite(parts[label][2]) or not trains), parts[label]
  assert _finite(parts["sum (fwd+bwd where it trains)"][2])
  inference = {r[0]: r for r in _rows(out, "### ours, inference")[1:]}
  for _, label, _ in detection.EVAL_PARTS:
    assert _finite(inference[label][1]), inference[label]
  if torch_here:
    grouped = {r[0]: r for r in _rows(out, "### grouped")[1:]}
    for module in ("backbone", "rpn", "roi_heads"):
      assert all(_finite(c) for c in grouped[module][1:]), grouped[module]
  assert "ours: loss after the timed steps" in out and "(finite: True)" in out

  detection.main(["--smoke", "--device-mode", "--models", "maskrcnn_resnet50_fpn"])
  out = capsys.readouterr().out
  rows = _rows(out, "## 3.")[1:]
  assert [r[0] for r in rows] == ["maskrcnn_resnet50_fpn_narrow"]
  assert all(_finite(c) for c in rows[0][1:6]), rows[0]
  assert "per FLOP of peak" in out
