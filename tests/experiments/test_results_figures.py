"""experiments/results_figures.py on hand-written report.csv files: the depth / normals panels of the
dilation sweep's depth + normals variant, and which figures each kind of root gets."""

import csv
import os

import pytest

from experiments import results_figures

DEPTH_NORMALS_ROWS = [
    {"run": f"os{s}", "status": "done", "model.output_stride": s, "val/depth/abs_rel": a, "val/depth/rmse": r,
     "val/depth/delta1": d, "val/normals/mean": m, "val/normals/median": md, "val/normals/within_11_25": w}
    for s, a, r, d, m, md, w in ((32, 0.5, 12.0, 0.4, 20.0, 15.0, 0.4), (16, 0.4, 10.0, 0.5, 18.0, 13.0, 0.5),
                                 (8, 0.3, 9.0, 0.6, 16.0, 11.0, 0.6))]


def _write(root, rows):
  root.mkdir(parents=True)
  with open(root / "report.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return root


def test_depth_normals_panels_and_the_figures_each_root_gets(tmp_path, capsys):
  depth_root = _write(tmp_path / "dilation_depth_normals", DEPTH_NORMALS_ROWS)
  seed1 = _write(tmp_path / "dilation_depth_normals_seed1",
                 [{**r, "val/depth/abs_rel": r["val/depth/abs_rel"] + 0.01} for r in DEPTH_NORMALS_ROWS])
  miou_root = _write(tmp_path / "dilation", [{"run": "os8", "model.output_stride": 8, "val/miou": 0.5}])
  out = tmp_path / "figures"
  assert results_figures.main(["--out", str(out), str(depth_root), str(miou_root), str(seed1)]) == 0
  printed = capsys.readouterr().out
  assert (out / "dilation_depth_normals_depth_normals.png").stat().st_size > 0   # both seeds, one figure
  assert (out / "dilation_miou.png").stat().st_size > 0
  assert not (out / "dilation_depth_normals_miou.png").exists()
  assert not (out / "dilation_depth_normals_seed1_depth_normals.png").exists()
  assert printed.count("wrote") == 2


def test_depth_normals_panels_refuse_a_root_without_them(tmp_path):
  root = _write(tmp_path / "r", [{"run": "a", "model.output_stride": 8, "val/miou": 0.5}])
  with pytest.raises(ValueError, match="roots: expected depth / normals columns"):
    results_figures.depth_normals_panels(root, tmp_path)
  with pytest.raises(ValueError, match="param: expected a column 'model.width'"):
    results_figures.depth_normals_panels(root, tmp_path, param="model.width")


@pytest.mark.parametrize("make, argv, expected", [
    (None, [], "the following arguments are required: roots"),
    (None, ["missing"], "roots: expected sweep roots holding report.csv, got missing, which has none; "
                        "run python -m experiments.report missing first"),
    ("dir", ["r"], "roots: expected sweep roots holding report.csv, got r"),
    ("file", ["r"], "roots: expected a directory, got r, which is a file"),
    ("report", ["r", "--out", "memory://figures"], "--out: expected a local path or a gs://"),
    ("report", ["r", "--out", "r/report.csv"], "--out: expected a directory, got r/report.csv, which is a file"),
    ("no_stride", ["r"], "param: expected a column 'model.output_stride'"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, monkeypatch, make, argv, expected):
  monkeypatch.chdir(tmp_path)
  if make == "dir":
    (tmp_path / "r").mkdir()
  elif make == "file":
    (tmp_path / "r").write_text("")
  elif make == "report":
    _write(tmp_path / "r", DEPTH_NORMALS_ROWS)
  elif make == "no_stride":
    _write(tmp_path / "r", [{k: v for k, v in r.items() if k != "model.output_stride"} for r in DEPTH_NORMALS_ROWS])
  try:
    code = results_figures.main(argv)
  except SystemExit as e:
    code = e.code
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2 and len(lines) == 1 and lines[0].startswith("ERROR: ") and expected in lines[0], err
  assert not [n for n in os.listdir(tmp_path) if n.endswith(":")]   # no local 'memory:' directory
  if make != "no_stride":   # found in report.csv itself, once --out is made
    assert not (tmp_path / "docs").exists()
