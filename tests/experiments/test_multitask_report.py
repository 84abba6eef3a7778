"""experiments/multitask_report.py on a fake study root: final metrics, the row order, Δ_MTL computed by
hand, the median steps/s, the plot, two seeds' summary, unfinished runs and bad roots."""

import json

import pytest

from experiments import multitask_report

# Final validation metrics of each fake run (step 600); an earlier evaluation (step 300) differs.
SINGLE = {"semantic": {"val/miou": 0.5}, "depth": {"val/depth/abs_rel": 0.2, "val/depth/rmse": 5.0,
                                                    "val/depth/delta1": 0.6},
          "normals": {"val/normals/mean": 20.0, "val/normals/median": 15.0, "val/normals/within_11_25": 0.4},
          "colorization": {"val/colorization/auc": 0.8, "val/colorization/auc_rebalanced": 0.6}}
# all: mIoU +10%, abs rel 0.2 -> 0.16 (+20%, lower is better), normals 20 -> 21° (-5%), AuC 0.8 -> 0.792 (-1%).
ALL = {"val/miou": 0.55, "val/depth/abs_rel": 0.16, "val/depth/rmse": 4.0, "val/depth/delta1": 0.7,
       "val/normals/mean": 21.0, "val/normals/median": 16.0, "val/normals/within_11_25": 0.35,
       "val/colorization/auc": 0.792, "val/colorization/auc_rebalanced": 0.61}
# all_partial: -10%, -10%, -10%, +10%.
PARTIAL = {"val/miou": 0.45, "val/depth/abs_rel": 0.22, "val/normals/mean": 22.0, "val/colorization/auc": 0.88}
ALL_TASKS = ["semantic", "depth", "normals", "colorization"]


def _run(root, name, tasks, final, *, partial=False, status="done", steps_per_sec=(2.0, 4.0, 100.0)):
  workdir = root / name
  workdir.mkdir(parents=True)
  (workdir / "sweep_run.json").write_text(json.dumps({"status": status, "name": name, "seconds": 600.0}))
  (workdir / "config.json").write_text(json.dumps({"experiment": {"tasks": tasks, "partial_labels": partial}}))
  lines = [{"step": 25 * (i + 1), "loss": 1.0, "steps_per_sec": s} for i, s in enumerate(steps_per_sec)]
  lines.append({"step": 300, **{k: v * 0.5 for k, v in final.items()}})
  lines.append({"step": 600, **final})
  (workdir / "metrics.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n{\"step\": 6")  # cut line


@pytest.fixture
def study(tmp_path):
  root = tmp_path / "multitask_study"
  for task, final in SINGLE.items():
    _run(root, f"single_{task}", [task], final)
  _run(root, "all", ALL_TASKS, ALL)
  _run(root, "all_partial", ALL_TASKS, PARTIAL, partial=True)
  return root


def test_table_with_hand_computed_delta_mtl(study):
  runs = multitask_report.load_study(study)
  assert [r["run"] for r in runs] == ["single_semantic", "single_depth", "single_normals", "single_colorization",
                                      "all", "all_partial"]
  single = multitask_report.single_task_metrics(runs)
  by_name = {r["run"]: r for r in runs}
  assert by_name["all"]["metrics"]["val/miou"] == 0.55 and by_name["all"]["steps_per_sec"] == 4.0
  assert multitask_report.relative_changes(by_name["all"], single) == pytest.approx(
      {"semantic": 0.1, "depth": 0.2, "normals": -0.05, "colorization": -0.01})
  assert multitask_report.run_delta_mtl(by_name["all"], single) == pytest.approx((0.1 + 0.2 - 0.05 - 0.01) / 4)
  assert multitask_report.run_delta_mtl(by_name["all_partial"], single) == pytest.approx((-0.1 - 0.1 - 0.1 + 0.1) / 4)
  assert multitask_report.run_delta_mtl(by_name["single_depth"], single) is None
  table = multitask_report.markdown_table(runs).splitlines()
  assert table[0].startswith("| run | tasks | labels | mIoU ↑ | depth abs rel ↓")
  row = {line.split(" | ")[0].strip("| "): line for line in table[2:]}
  assert "| +6.0% |" in row["all"] and "| -5.0% |" in row["all_partial"]
  assert "| one per example |" in row["all_partial"] and "| 0.550 | 0.160 | 4.00 | 0.700 | 21.00 |" in row["all"]
  assert "| 4.00 | 10 | done |" in row["all"]   # median steps/s, minutes, status
  assert "%" not in row["single_normals"]


def test_plot_and_main(study, tmp_path, capsys):
  path = tmp_path / "docs" / "multitask_study.png"
  assert multitask_report.main([str(study), "--plot", str(path)]) == 0
  assert path.stat().st_size > 0
  out = capsys.readouterr().out
  assert "+6.0%" in out and "not finished" not in out
  assert not (study / "report.md").exists()     # nothing written under the study's root


def test_two_seeds_summary_and_plot(study, tmp_path, capsys):
  # Seed 1: the same single-task runs; all = +20%, +20%, +20%, +20% (Δ_MTL +20%); no all_partial run.
  seed1 = tmp_path / "seed1"
  for task, final in SINGLE.items():
    _run(seed1, f"single_{task}", [task], final)
  _run(seed1, "all", ALL_TASKS, {"val/miou": 0.6, "val/depth/abs_rel": 0.16, "val/normals/mean": 16.0,
                                 "val/colorization/auc": 0.96})
  studies = [multitask_report.load_study(study), multitask_report.load_study(seed1)]
  rows = {line.split(" | ")[0].strip("| "): line for line in multitask_report.seed_summary(studies).splitlines()[2:]}
  # all: semantic +10% / +20% (mean +15%); Δ_MTL +6.0% / +20.0% (mean +13.0%)
  assert "| +10.0% / +20.0% (+15.0%) |" in rows["all"] and rows["all"].endswith("| +6.0% / +20.0% (+13.0%) |")
  assert rows["all_partial"].endswith("| -5.0% (-5.0%) |")   # one seed only
  path = tmp_path / "two_seeds.png"
  assert multitask_report.main([str(study), str(seed1), "--plot", str(path)]) == 0
  out = capsys.readouterr().out
  assert path.stat().st_size > 0 and f"### {seed1}" in out and "per seed" in out


def test_unfinished_runs_have_no_delta_and_are_named(tmp_path, capsys):
  root = tmp_path / "study"
  _run(root, "single_semantic", ["semantic"], SINGLE["semantic"])
  _run(root, "all", ALL_TASKS, {}, status="running")
  assert multitask_report.main([str(root)]) == 0
  out = capsys.readouterr().out
  assert "not finished: all" in out and "%" not in out
  with pytest.raises(ValueError, match="expected a multi-task run and its single-task baselines"):
    multitask_report.plot_relative_changes([multitask_report.load_study(root)], tmp_path / "x.png")


def test_bad_roots(tmp_path):
  with pytest.raises(ValueError, match="root: expected a sweep root with runs"):
    multitask_report.load_study(tmp_path)
  (tmp_path / "r").mkdir()
  (tmp_path / "r" / "sweep_run.json").write_text("{}")
  (tmp_path / "r" / "config.json").write_text(json.dumps({"experiment": {}}))
  with pytest.raises(ValueError, match="workdir: expected config.experiment.tasks"):
    multitask_report.load_study(tmp_path)
