"""experiments/results_figures.py on hand-written report.csv files: the depth / normals panels of the
dilation sweep's depth + normals variant, and which figures each kind of root gets."""

import csv

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
