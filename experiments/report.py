"""Report of a sweep: every run's final metrics as Markdown and CSV tables, and PNG plots.

    python -m experiments.report runs/rf            # writes runs/rf/report.md, report.csv, plots/*.png

A run is a directory under the sweep root holding the launcher's `sweep_run.json`; its metrics are the
last value of each key in its `metrics.jsonl` (the trainer logs one JSON object per step). If the
experiment file defines `describe(config) -> dict` (e.g. the receptive field or GFLOPs of the run's
model), those columns are added, computed from the run's resolved `config.json`.

Bad input is one `ERROR: ...` line on stderr and exit 2, naming the file: a root that is missing, empty
(no runs), a file, or on a filesystem that cannot be read or written; a run record or `config.json`
that is not JSON (cut short, damaged); a `metrics.jsonl` record that is not a JSON object; an experiment
file or `describe` that fails. A `metrics.jsonl` line that is not JSON at all (cut short when the run was
stopped) is left out with a note, as is `describe` when the run's experiment file is not here.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import sys

from dense_jax import paths
from dense_jax.train.workdir import CONFIG_FILE
from experiments import sweep as sweep_lib

METRICS_FILE = "metrics.jsonl"
# Kept in the CSV, left out of the Markdown table and the plots: optimiser state and per-class detail.
DETAIL_ONLY = ("step", "learning_rate", "grad_norm")
DETAIL_ONLY_PARTS = ("/iou/", "/fraction")


def _note(text: str) -> None:
  print(f"note: {text}", file=sys.stderr, flush=True)


def _read_json(path: paths.Path, what: str, advice: str):
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise sweep_lib.SweepError(f"{path}: expected {what} (JSON), got a file that is not JSON "
                               f"({type(e).__name__}: {e}); {advice}") from None


def final_metrics(workdir: paths.Path) -> dict[str, float]:
  """The last logged value of every numeric key of `metrics.jsonl` (and the step it came from). A line
  that is not JSON (cut short by a preemption) is skipped with a note on stderr; a JSON line that is not
  an object is a SweepError naming the file and line."""
  path = workdir / METRICS_FILE
  last: dict[str, float] = {}
  if not path.exists():
    return last
  try:
    text = path.read_text()
  except UnicodeDecodeError as e:
    raise sweep_lib.SweepError(f"{path}: expected the trainer's metrics (JSON lines), got bytes that are not "
                               f"text ({e}); the file is damaged: move it away to report the run without it") from None
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      _note(f"{path} line {number} is not JSON (cut short when the run was stopped?); left out")
      continue
    if not isinstance(record, dict):
      raise sweep_lib.SweepError(f"{path} line {number}: expected a JSON object of metrics, got "
                                 f"{type(record).__name__} {line[:80]!r}; the file is not the trainer's "
                                 f"metrics.jsonl, or is damaged")
    for key, value in record.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        last[key] = value
  return last


def _describe(record: dict, workdir: paths.Path) -> dict:
  """Extra columns from the experiment file's optional `describe(config)`."""
  config_path = workdir / CONFIG_FILE
  config_file = record.get("config", "").partition(":")[0]
  if not config_path.exists():
    return {}
  if not pathlib.Path(config_file).is_file():
    _note(f"run {workdir.name}: its experiment file {config_file!r} is not here (a path relative to where "
          f"the sweep ran: run the report from there); its describe() columns are left out")
    return {}
  module = sweep_lib.load_module(config_file, key=f"{workdir / sweep_lib.RUN_RECORD} config")
  if not hasattr(module, "describe"):
    return {}
  import ml_collections  # pylint: disable=g-import-not-at-top
  resolved = _read_json(config_path, "the run's resolved config", "the trainer rewrites it when the run resumes")
  if not isinstance(resolved, dict):
    raise sweep_lib.SweepError(f"{config_path}: expected a JSON object (the run's config), "
                               f"got {type(resolved).__name__}")
  try:
    columns = module.describe(ml_collections.ConfigDict(resolved))
    return dict(columns)
  except Exception as e:  # pylint: disable=broad-except  # whatever the user's describe raises
    raise sweep_lib.SweepError(f"run {workdir.name}: describe(config) of {config_file} failed "
                               f"({sweep_lib.one_line(e)}); it must return a dict of columns") from None


def collect(root: paths.Path) -> list[dict]:
  """One row per run: name, status, swept overrides, described columns, final metrics."""
  rows = []
  for record_path in sorted(root.glob(f"*/{sweep_lib.RUN_RECORD}")):
    workdir = record_path.parent
    advice = "re-run the sweep to rewrite it, or move the run's directory away to leave the run out"
    record = _read_json(record_path, "the launcher's run record", advice)
    if not isinstance(record, dict) or not isinstance(record.get("overrides", {}), dict):
      raise sweep_lib.SweepError(f"{record_path}: expected the launcher's run record, a JSON object with an "
                                 f"'overrides' object, got {json.dumps(record)[:80]}; {advice}")
    row = {"run": str(record.get("name", workdir.name)), "status": str(record.get("status", "?"))}
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
    raise sweep_lib.SweepError(f"root: expected a sweep root with runs (*/{sweep_lib.RUN_RECORD}), found none in "
                               f"{root}; pass the --root the sweep ran with (python -m experiments.sweep ... --root)")
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


def _main(argv: list[str] | None) -> int:
  from dense_jax.train import cli  # pylint: disable=g-import-not-at-top
  parser = cli.ArgumentParser(prog="experiments.report", description=__doc__.split("\n")[0])
  parser.add_argument("root", help="the sweep root (local or gs://), as given to experiments.sweep --root")
  args = parser.parse_args(argv)
  root = sweep_lib.check_root(args.root, "root", create=False)
  if not root.exists():
    raise sweep_lib.SweepError(f"root: expected a sweep root (a directory of runs written by experiments.sweep), "
                               f"got {args.root}, which does not exist")
  if paths.is_remote(args.root):
    paths.check_writable(args.root, "root")
  elif not os.access(root, os.W_OK | os.X_OK):
    raise sweep_lib.SweepError(f"root: expected a directory the report can be written into, got {args.root}, "
                               f"which this user cannot write")
  try:
    written = write_report(root)
  except OSError as e:
    raise sweep_lib.SweepError(
        f"root: the report cannot be written into {args.root} ({sweep_lib.one_line(e)})") from None
  print((root / "report.md").read_text())
  print(f"[report] wrote {', '.join(str(p) for p in written.values())}")
  return 0


def main(argv: list[str] | None = None) -> int:
  """The command line (module docstring); bad input is one `ERROR:` line on stderr and exit 2."""
  from dense_jax.train import cli  # pylint: disable=g-import-not-at-top
  try:
    return _main(argv)
  except (sweep_lib.SweepError, paths.RemotePathError) as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return cli.EXIT_BAD_CONFIG


if __name__ == "__main__":
  sys.exit(main())
