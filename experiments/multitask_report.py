"""Report of the multi-task study (experiments/multitask_dense_shapes.py's sweep): tables and one plot.

    python -m experiments.multitask_report runs/multitask_study --plot docs/results/multitask_study.png
    python -m experiments.multitask_report runs/multitask_study runs/multitask_study_seed1 \
        --plot docs/results/multitask_study.png                # two seeds (one sweep root each)

Reads, per run directory under the root (those holding the launcher's `sweep_run.json`), the final
validation metrics (the last value of each key of `metrics.jsonl`, `experiments.report.final_metrics`)
and the run's tasks and label regime from its `config.json` (`experiment.tasks`,
`experiment.partial_labels`). Nothing is written under the root.

Prints a Markdown table, one row per run (single-task runs first, in the study's task order): the
task metrics of `COLUMNS` (blank where the run lacks the task), Δ_MTL for each multi-task run against
the single-task runs (`multitask_dense_shapes.delta_mtl`: the mean over its tasks of
±(M_mtl − M_single) / M_single on each task's primary metric — mIoU, depth abs_rel, normals mean
angle, colorization AuC — + where higher is better), the median of the run's logged `steps_per_sec`
(robust to the load spikes of a shared machine), its wall-clock minutes and status.

Several roots are several seeds of the same study: a table per root, then a summary with each
multi-task run's per-task relative changes and Δ_MTL per seed (each seed's multi-task run against the
same seed's single-task runs) and their mean.

`--plot PATH`: grouped bars of the per-task relative change (the terms of Δ_MTL, in %, positive =
better than the task alone) for every multi-task run, Δ_MTL in the legend; with several seeds the bar is
the mean over seeds and a dot marks each seed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

from dense_jax import paths
from experiments import report as report_lib, sweep as sweep_lib
from experiments.multitask_dense_shapes import PRIMARY_METRICS, TASKS, delta_mtl

# (metrics.jsonl key, column header) of the table, grouped by task.
COLUMNS = (("val/miou", "mIoU ↑"), ("val/depth/abs_rel", "depth abs rel ↓"), ("val/depth/rmse", "depth RMSE ↓"),
           ("val/depth/delta1", "depth δ1 ↑"), ("val/normals/mean", "normals mean° ↓"),
           ("val/normals/median", "normals median° ↓"), ("val/normals/within_11_25", "normals <11.25° ↑"),
           ("val/colorization/auc", "color AuC ↑"), ("val/colorization/auc_rebalanced", "color AuC rebal. ↑"))


def _median_steps_per_sec(workdir: paths.Path) -> float:
  values = []
  path = workdir / report_lib.METRICS_FILE
  for line in path.read_text().splitlines() if path.exists() else ():
    try:
      value = json.loads(line).get("steps_per_sec")
    except json.JSONDecodeError:
      continue   # a line cut short by a preemption
    if isinstance(value, (int, float)) and math.isfinite(value):
      values.append(float(value))
  return statistics.median(values) if values else float("nan")


def load_run(workdir) -> dict:
  """`{run, status, tasks, partial, seconds, steps_per_sec, metrics}` of one run directory."""
  workdir = paths.as_path(workdir)
  record = json.loads((workdir / sweep_lib.RUN_RECORD).read_text())
  config_path = workdir / report_lib.CONFIG_FILE
  if not config_path.exists():
    raise ValueError(f"workdir: expected {config_path} (written by the trainer when the run starts), not found")
  experiment = json.loads(config_path.read_text()).get("experiment", {})
  if not experiment.get("tasks"):
    raise ValueError(f"workdir: expected config.experiment.tasks in {config_path} (a multitask_dense_shapes run), "
                     f"got {experiment!r}")
  return {"run": record.get("name", workdir.name), "status": record.get("status", "?"),
          "tasks": tuple(experiment["tasks"]), "partial": bool(experiment.get("partial_labels", False)),
          "seconds": record.get("seconds"), "steps_per_sec": _median_steps_per_sec(workdir),
          "metrics": report_lib.final_metrics(workdir)}


def load_study(root) -> list[dict]:
  """Every run under `root` (local or gs://), single-task runs first (in `TASKS` order), then the
  multi-task runs."""
  root = paths.as_path(root)
  runs = [load_run(p.parent) for p in sorted(root.glob(f"*/{sweep_lib.RUN_RECORD}"))]
  if not runs:
    raise ValueError(f"root: expected a sweep root with runs (*/{sweep_lib.RUN_RECORD}), found none in {root}")
  order = lambda r: (len(r["tasks"]) > 1, TASKS.index(r["tasks"][0]) if r["tasks"][0] in TASKS else len(TASKS),
                     r["partial"], r["run"])
  return sorted(runs, key=order)


def single_task_metrics(runs: list[dict]) -> dict[str, dict]:
  """`{task: final metrics}` of the single-task runs trained on full labels."""
  return {r["tasks"][0]: r["metrics"] for r in runs if len(r["tasks"]) == 1 and not r["partial"]}


def _has(metrics: dict, task: str) -> bool:
  value = metrics.get(PRIMARY_METRICS[task][0])
  return isinstance(value, (int, float)) and math.isfinite(value)


def relative_changes(run: dict, single: dict[str, dict]) -> dict[str, float]:
  """Per task of a multi-task run that has a finished single-task baseline: the signed relative change
  of its primary metric (the Δ_MTL term, positive = better than alone)."""
  return {t: delta_mtl(run["metrics"], single, tasks=(t,)) for t in run["tasks"]
          if t in single and _has(single[t], t) and _has(run["metrics"], t)}


def run_delta_mtl(run: dict, single: dict[str, dict]) -> float | None:
  """Δ_MTL of a multi-task run over all its tasks (None for a single-task run, or while a baseline or
  one of its own metrics is missing)."""
  if len(run["tasks"]) < 2:
    return None
  if len(relative_changes(run, single)) < len(run["tasks"]):
    return None
  return delta_mtl(run["metrics"], single, tasks=run["tasks"])


def _fmt(value, digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return ""
  return f"{value:.{digits}f}"


def markdown_table(runs: list[dict]) -> str:
  single = single_task_metrics(runs)
  header = ["run", "tasks", "labels", *(h for _, h in COLUMNS), "Δ_MTL", "steps/s (median)", "min", "status"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in runs:
    cells = [r["run"], "+".join(r["tasks"]), "one per example" if r["partial"] else "full"]
    for key, _ in COLUMNS:
      value = r["metrics"].get(key)
      cells.append(_fmt(value, 2 if key in ("val/depth/rmse", "val/normals/mean", "val/normals/median") else 3))
    dm = run_delta_mtl(r, single)
    cells += ["" if dm is None else f"{100 * dm:+.1f}%", _fmt(r["steps_per_sec"], 2),
              _fmt(r["seconds"] / 60 if r["seconds"] else None, 0), r["status"]]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def seed_changes(studies: list[list[dict]]) -> dict[str, list[dict[str, float]]]:
  """`{multi-task run name: [per-seed relative changes (task -> change)]}`, each seed's run against the
  same seed's single-task runs; a seed lacking the run or a baseline contributes what it has."""
  out: dict[str, list[dict[str, float]]] = {}
  for runs in studies:
    single = single_task_metrics(runs)
    for r in runs:
      if len(r["tasks"]) > 1:
        out.setdefault(r["run"], []).append(relative_changes(r, single))
  return out


def _mean(values) -> float:
  values = [v for v in values if v is not None and math.isfinite(v)]
  return sum(values) / len(values) if values else float("nan")


def seed_summary(studies: list[list[dict]]) -> str:
  """Markdown: per multi-task run, each task's relative change and Δ_MTL, 'seed0 / seed1 / ... (mean)'."""
  deltas = {}
  for runs in studies:
    single = single_task_metrics(runs)
    for r in runs:
      if len(r["tasks"]) > 1:
        deltas.setdefault(r["run"], []).append(run_delta_mtl(r, single))
  changes = seed_changes(studies)
  tasks = [t for t in TASKS if any(t in c for per_seed in changes.values() for c in per_seed)]
  pct = lambda v: "–" if v is None or not math.isfinite(v) else f"{100 * v:+.1f}%"
  cell = lambda values: " / ".join(pct(v) for v in values) + f" ({pct(_mean(values))})"
  header = ["run", *(f"{t} vs. alone" for t in tasks), "Δ_MTL"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, per_seed in changes.items():
    cells = [name, *(cell([c.get(t) for c in per_seed]) for t in tasks), cell(deltas[name])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_relative_changes(studies: list[list[dict]], path) -> paths.Path:
  """Grouped bars: per task, each multi-task run's relative change against the task alone (%), the mean
  over the studies (seeds), with a dot per seed when there are several."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  path = paths.as_path(path)
  changes = seed_changes(studies)
  tasks = [t for t in TASKS if any(t in c for per_seed in changes.values() for c in per_seed)]
  if not tasks:
    raise ValueError("runs: expected a multi-task run and its single-task baselines with final metrics, got none")
  fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(tasks), 3.2))
  width = 0.8 / len(changes)
  for i, (name, per_seed) in enumerate(changes.items()):
    xs = [j + (i - (len(changes) - 1) / 2) * width for j in range(len(tasks))]
    means = [100 * _mean([c.get(t) for c in per_seed]) for t in tasks]
    complete = [c for c in per_seed if all(t in c for t in tasks)]
    dm = _mean([_mean(c.values()) for c in complete]) if complete else None
    label = f"{name} (Δ_MTL {100 * dm:+.1f}%)" if dm is not None else name
    bars = ax.bar(xs, means, width, label=label)
    ax.bar_label(bars, fmt="%+.1f", fontsize=7, padding=2)
    if len(per_seed) > 1:
      for c in per_seed:
        ax.plot(xs, [100 * c.get(t, float("nan")) for t in tasks], "o", color="black", markersize=2.5)
  metric_names = {"semantic": "mIoU", "depth": "abs rel", "normals": "mean angle", "colorization": "AuC",
                  "boundaries": "F1"}
  ax.set_xticks(range(len(tasks)), [f"{t}\n({metric_names.get(t, '')})" for t in tasks], fontsize=8)
  ax.axhline(0, color="black", linewidth=0.8)
  ax.set_ylabel("change vs. task alone (%, + = better)", fontsize=8)
  if len(studies) > 1:
    ax.set_title(f"bars: mean of {len(studies)} seeds; dots: each seed", fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  ax.legend(fontsize=7, frameon=False)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    fig.savefig(f, dpi=110, bbox_inches="tight", format=path.suffix[1:] or "png")
  plt.close(fig)
  return path


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("roots", type=paths.as_path, nargs="+", help="sweep roots, one per seed")
  parser.add_argument("--plot", type=paths.as_path, default=None, help="PNG of the per-task relative changes")
  args = parser.parse_args(argv)
  studies = [load_study(root) for root in args.roots]
  for root, runs in zip(args.roots, studies):
    if len(studies) > 1:
      print(f"\n### {root}\n")
    print(markdown_table(runs))
    unfinished = [r["run"] for r in runs if r["status"] != "done"]
    if unfinished:
      print(f"\n[multitask_report] not finished: {', '.join(unfinished)} (their numbers are their latest)")
  if len(studies) > 1:
    print(f"\n### relative change vs. the task alone, per seed ({' / '.join(map(str, args.roots))}) and mean\n")
    print(seed_summary(studies))
  if args.plot is not None:
    print(f"[multitask_report] wrote {plot_relative_changes(studies, args.plot)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
