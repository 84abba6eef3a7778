"""Runs a fine-tuning study of `experiments/finetune_dense_shapes.py` in order and reports it.

    python -m experiments.finetune_study --root runs/finetune --study semantic --figures docs/results

Stages, each `python -m dense_jax.train` in `<root>/<study>/<run>`: `pretrain`, then for every seed
`finetune_seed<s>` (`--config.init.path=<root>/<study>/pretrain`) and `scratch_seed<s>`. A finished run
is skipped (the trainer resumes a workdir with checkpoints; at its last step it only evaluates). Then
`<root>/<study>/report.md` (the final metrics per run and the mean over seeds) and the plot
`<figures>/finetune_<study>.png` (each metric against the step, every seed drawn, fine-tuned vs scratch).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from dense_jax import paths
from experiments import report as report_lib
from experiments.finetune_dense_shapes import STUDIES

CONFIG_FILE = "experiments/finetune_dense_shapes.py"
METRICS = {"semantic": ("val/miou", "val/pixel_accuracy"), "panoptic": ("val/pq", "val/mask_ap", "val/box_ap")}
ARMS = ("finetune", "scratch")


def _train(spec: str, workdir, *overrides: str) -> None:
  if (workdir / "done.json").exists():
    return
  command = [sys.executable, "-m", "dense_jax.train", f"--config={CONFIG_FILE}:{spec}", f"--workdir={workdir}",
             *overrides]
  print("$", " ".join(command), flush=True)
  subprocess.run(command, check=True)
  (workdir / "done.json").write_text(json.dumps({"command": command}) + "\n")


def run_study(root, study: str, seeds: tuple[int, ...]) -> None:
  """The pretraining run, then both arms for every seed (see the module docstring)."""
  base = paths.as_path(root) / study
  pretrain = base / "pretrain"
  _train(f"study={study},stage=pretrain", pretrain)
  for seed in seeds:
    _train(f"study={study},stage=finetune,seed={seed}", base / f"finetune_seed{seed}",
           f"--config.init.path={pretrain}")
    _train(f"study={study},stage=scratch,seed={seed}", base / f"scratch_seed{seed}")


def _curves(workdir, metrics) -> dict[str, list[tuple[int, float]]]:
  out = {m: [] for m in metrics}
  for line in (workdir / report_lib.METRICS_FILE).read_text().splitlines():
    record = json.loads(line) if line.strip() else {}
    for m in metrics:
      if m in record:
        out[m].append((record["step"], record[m]))
  return out


def write_report(root, study: str, seeds: tuple[int, ...], figures) -> tuple[str, object]:
  """`(markdown table, plot path)`: final metrics per run, the mean of each arm, curves per seed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  base = paths.as_path(root) / study
  metrics = METRICS[study]
  rows, means = [], {}
  for arm in ARMS:
    finals = []
    for seed in seeds:
      final = report_lib.final_metrics(base / f"{arm}_seed{seed}")
      finals.append(final)
      rows.append({"run": f"{arm} seed {seed}", "step": final.get("step"), **{m: final.get(m) for m in metrics}})
    means[arm] = {m: sum(f[m] for f in finals) / len(finals) for m in metrics}
    rows.append({"run": f"**{arm} mean**", "step": None, **means[arm]})
  table = report_lib.markdown_table(rows, ["run", "step", *metrics])
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
  for ax, metric in zip(axes[0], metrics):
    for arm, colour in zip(ARMS, ("tab:blue", "tab:grey")):
      for i, seed in enumerate(seeds):
        steps, values = zip(*_curves(base / f"{arm}_seed{seed}", metrics)[metric])
        ax.plot(steps, values, color=colour, marker="o", alpha=0.85, label=arm if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_title(metric)
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  fig.suptitle(f"{study}: initialised from the pretraining run vs from scratch ({len(seeds)} seeds)")
  fig.tight_layout()
  out_dir = paths.as_path(figures) if figures else base
  out_dir.mkdir(parents=True, exist_ok=True)
  plot_path = out_dir / f"finetune_{study}.png"
  with plot_path.open("wb") as f:
    fig.savefig(f, dpi=110)
  plt.close(fig)
  (base / "report.md").write_text(table + "\n")
  return table, plot_path


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True)
  parser.add_argument("--study", choices=STUDIES, required=True)
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--figures", default=None, help="where the plot goes (default <root>/<study>)")
  parser.add_argument("--report_only", action="store_true")
  args = parser.parse_args(argv)
  seeds = tuple(int(s) for s in args.seeds.split(","))
  if not args.report_only:
    run_study(args.root, args.study, seeds)
  table, plot_path = write_report(args.root, args.study, seeds, args.figures)
  print(table)
  print(f"plot: {plot_path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
