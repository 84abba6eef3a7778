"""Report of a sweep: every run's final metrics as Markdown and CSV tables, and PNG plots.

    python -m experiments.report runs/rf            # writes runs/rf/report.md, report.csv, plots/*.png

A run is a directory under the sweep root holding the launcher's `sweep_run.json`; its metrics are the
last value of each key in its `metrics.jsonl` (the trainer logs one JSON object per step). If the
experiment file defines `describe(config) -> dict` (e.g. the receptive field or GFLOPs of the run's
model), those columns are added, computed from the run's resolved `config.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import sys

from dense_jax import paths
from experiments import sweep as sweep_lib

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
# Kept in the CSV, left out of the Markdown table and the plots: optimiser state and per-class detail.
DETAIL_ONLY = ("step", "learning_rate", "grad_norm")
DETAIL_ONLY_PARTS = ("/iou/", "/fraction")


def final_metrics(workdir: paths.Path) -> dict[str, float]:
  """The last logged value of every numeric key of `metrics.jsonl` (and the step it came from)."""
  path = workdir / METRICS_FILE
  last: dict[str, float] = {}
  if not path.exists():
    return last
  for line in path.read_text().splitlines():
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue  # a line cut short by a preemption
    for key, value in record.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        last[key] = value
  return last


def _describe(record: dict, workdir: paths.Path) -> dict:
  """Extra columns from the experiment file's optional `describe(config)`."""
  config_path = workdir / CONFIG_FILE
  config_file = record.get("config", "").partition(":")[0]
  if not config_path.exists() or not pathlib.Path(config_file).is_file():
    return {}
  module = sweep_lib.load_module(config_file)
  if not hasattr(module, "describe"):
    return {}
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  return dict(module.describe(config))


def collect(root: paths.Path) -> list[dict]:
  """One row per run: name, status, swept overrides, described columns, final metrics."""
  rows = []
  for record_path in sorted(root.glob(f"*/{sweep_lib.RUN_RECORD}")):
    workdir = record_path.parent
    record = json.loads(record_path.read_text())
    row = {"run": record.get("name", workdir.name), "status": record.get("status", "?")}
    row.update({k: v for k, v in record.get("overrides", {}).items()})
    row.update(_describe(record, workdir))
    row.update(final_metrics(workdir))
    rows.append(row)
  return rows


def _columns(rows: list[dict]) -> list[str]:
  columns: list[str] = []
  for row in rows:
    columns += [key for key in row if key not in columns]
  return columns


def _format(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}" if math.isfinite(value) else str(value)
  return "" if value is None else str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(_format(row.get(c)) for c in columns) + " |" for row in rows]
  return "\n".join(lines)


def plot(rows: list[dict], swept: list[str], metrics: list[str], out_dir: paths.Path) -> list[paths.Path]:
  """One PNG per (metric, swept parameter): the metric against the parameter, one point per run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for param in swept:
    for metric in metrics:
      pairs = [(row[param], row[metric]) for row in rows if metric in row and param in row]
      if not pairs:
        continue
      fig, ax = plt.subplots(figsize=(4.5, 3.2))
      labels = [_format(p) for p, _ in pairs]
      numeric = all(isinstance(p, (int, float)) and not isinstance(p, bool) for p, _ in pairs)
      if numeric:
        pairs.sort(key=lambda pv: pv[0])
        ax.plot([p for p, _ in pairs], [v for _, v in pairs], "o-")
      else:
        ax.bar(range(len(pairs)), [v for _, v in pairs], tick_label=labels)
        ax.tick_params(axis="x", labelrotation=30)
      ax.set_xlabel(param)
      ax.set_ylabel(metric)
      ax.grid(alpha=0.3)
      fig.tight_layout()
      path = out_dir / f"{_safe(metric)}_vs_{_safe(param)}.png"
      with path.open("wb") as f:
        fig.savefig(f, dpi=110, format="png")
      plt.close(fig)
      paths.append(path)
  return paths


def _safe(text: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_report(root: paths.Path) -> dict[str, paths.Path]:
  rows = collect(root)
  if not rows:
    raise ValueError(f"root: expected a sweep root with runs (*/{sweep_lib.RUN_RECORD}), found none in {root}")
  columns = _columns(rows)
  overrides = {k for row in rows for k in row} - {"run", "status"}
  swept = [c for c in columns if c in overrides and "." in c]      # config keys are dotted
  headline = [c for c in columns if c not in DETAIL_ONLY and not any(p in c for p in DETAIL_ONLY_PARTS)]
  metrics = [c for c in headline if c not in swept and c not in ("run", "status")
             and all(isinstance(r.get(c, 0.0), (int, float)) for r in rows)]
  md_path, csv_path = root / "report.md", root / "report.csv"
  md_path.write_text(f"# Sweep report: {root}\n\n{markdown_table(rows, headline)}\n\n"
                     f"Every column, per-class IoUs included, is in {csv_path.name}.\n")
  with csv_path.open("w") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  plots = plot(rows, swept, metrics, root / "plots")
  return {"markdown": md_path, "csv": csv_path, **{p.stem: p for p in plots}}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", type=paths.as_path)
  args = parser.parse_args(argv)
  written = write_report(args.root)
  print((args.root / "report.md").read_text())
  print(f"[report] wrote {', '.join(str(p) for p in written.values())}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
