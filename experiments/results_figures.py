"""The figures of docs/results.md, from sweep roots that went through evaluate_breakdown and report.

    python -m experiments.results_figures --out docs/results \\
        runs/dilation_vs_downsampling runs/receptive_field runs/upsampling

Per sweep root: `<name>_miou.png` — grouped bars of mIoU overall, in the boundary band, in the
interior, on small and on large objects, one group per run (from the root's report.csv); and, where the
runs saved one, `<name>_erf.png` — every run's trained effective receptive field (erf.png) side by side.
Roots whose runs report depth and normals instead (`dilation_vs_downsampling.py:quick,tasks=depth+normals`)
share one figure, `<first such root's name>_depth_normals.png`: one panel per metric of
`DEPTH_NORMALS_METRICS` against the swept parameter (the output stride), one line per root (e.g. one
per seed), with an arrow for the better direction.

    python -m experiments.results_figures --out docs/results runs/dilation_depth_normals \
        runs/dilation_depth_normals_seed1
"""

from __future__ import annotations

import csv
import io
import os
import sys

from dense_jax import paths

METRICS = (("val/miou", "all"), ("val/band/miou", "boundary band"), ("val/interior/miou", "interior"),
           ("val/small/miou", "small objects"), ("val/large/miou", "large objects"))


# (report.csv column, panel title, higher is better)
DEPTH_NORMALS_METRICS = (("val/depth/abs_rel", "depth abs rel", False), ("val/depth/rmse", "depth RMSE", False),
                         ("val/depth/delta1", "depth δ<1.25", True), ("val/normals/mean", "normals mean (°)", False),
                         ("val/normals/median", "normals median (°)", False),
                         ("val/normals/within_11_25", "normals within 11.25°", True))


def _rows(root) -> list[dict]:
  with (paths.as_path(root) / "report.csv").open() as f:
    return list(csv.DictReader(f))


def _save_figure(fig, path: paths.Path) -> paths.Path:
  with path.open("wb") as f:   # a file object: the folder may be a bucket (gs://)
    fig.savefig(f, dpi=110, bbox_inches="tight", format="png")
  return path


def depth_normals_panels(roots, out, param: str = "model.output_stride") -> paths.Path:
  """One small panel per depth / normals metric against `param` (a numeric swept config key; the x axis
  is log2 and reversed, coarse to fine, when the values are powers of two), one line per root of
  `roots` (a root or a list of them: seeds of one sweep); the file is named after the first root."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
  tables = {}
  for root in map(paths.as_path, roots):
    rows = _rows(root)
    if not rows or param not in rows[0]:
      raise ValueError(f"param: expected a column {param!r} in {root / 'report.csv'}, "
                       f"got {list(rows[0]) if rows else []}")
    tables[root] = sorted(rows, key=lambda r: -float(r[param]))
  metrics = [m for m in DEPTH_NORMALS_METRICS
             if all(row.get(m[0]) not in (None, "") for rows in tables.values() for row in rows)]
  if not metrics:
    raise ValueError(f"roots: expected depth / normals columns ({[m[0] for m in DEPTH_NORMALS_METRICS]}) in the "
                     f"report.csv of {[str(r) for r in tables]}, found none")
  fig, axes = plt.subplots(1, len(metrics), figsize=(2.1 * len(metrics), 2.5), squeeze=False)
  for ax, (key, title, higher) in zip(axes[0], metrics):
    xs = sorted({float(r[param]) for rows in tables.values() for r in rows}, reverse=True)
    for root, rows in tables.items():
      ax.plot([float(r[param]) for r in rows], [float(r[key]) for r in rows], "o-", label=root.name, alpha=0.8)
    if all(x > 0 and x.is_integer() and (int(x) & (int(x) - 1)) == 0 for x in xs):
      ax.set_xscale("log", base=2)
      ax.set_xticks(xs, [str(int(x)) for x in xs])
      ax.invert_xaxis()
    ax.set_title(f"{title} {'↑' if higher else '↓'}", fontsize=8)
    ax.set_xlabel(param.split(".")[-1].replace("_", " "), fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  if len(tables) > 1:
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, frameon=False, ncol=len(tables),
               loc="upper center", bbox_to_anchor=(0.5, 0.0))
  path = _save_figure(fig, paths.as_path(out) / f"{next(iter(tables)).name}_depth_normals.png")
  plt.close(fig)
  return path


def miou_bars(root, out) -> paths.Path:
  root = paths.as_path(root)
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = _rows(root)
  metrics = [(k, label) for k, label in METRICS if all(row.get(k) not in (None, "") for row in rows)]
  fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.2))
  width = 0.8 / len(metrics)
  for m, (key, label) in enumerate(metrics):
    xs = [i + (m - (len(metrics) - 1) / 2) * width for i in range(len(rows))]
    ax.bar(xs, [float(r[key]) for r in rows], width, label=label)
  ax.set_xticks(range(len(rows)), [r["run"] for r in rows])
  ax.set_ylabel("mIoU (validation)")
  ax.set_title(root.name, fontsize=9)
  ax.grid(axis="y", alpha=0.3)
  ax.legend(fontsize=7, ncol=len(metrics), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
  fig.tight_layout()
  path = _save_figure(fig, paths.as_path(out) / f"{root.name}_miou.png")
  plt.close(fig)
  return path


def erf_strip(root, out) -> paths.Path | None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = paths.as_path(root)
  rows = _rows(root)
  images = [Image.open(io.BytesIO((root / r["run"] / "erf.png").read_bytes())).convert("RGB") for r in rows
            if (root / r["run"] / "erf.png").exists()]
  if not images:
    return None
  w, h = images[0].size
  strip = Image.new("RGB", (w * len(images), h), "white")
  for i, image in enumerate(images):
    strip.paste(image, (i * w, 0))
  path = paths.as_path(out) / f"{root.name}_erf.png"
  with path.open("wb") as f:
    strip.save(f, format="PNG")
  return path


def _main(argv) -> int:
  from dense_jax.train import cli  # pylint: disable=g-import-not-at-top
  from experiments import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  parser = cli.ArgumentParser(prog="experiments.results_figures", description=__doc__.split("\n")[0])
  parser.add_argument("roots", nargs="+", help="sweep roots (local or gs://) that experiments.report wrote into")
  parser.add_argument("--out", default="docs/results", help="directory for the figures (local or gs://)")
  args = parser.parse_args(argv)
  roots = []
  for text in args.roots:
    root = sweep_lib.check_root(text, "roots", create=False)
    if not paths.check_readable(root / "report.csv", "roots"):
      raise sweep_lib.SweepError(f"roots: expected sweep roots holding report.csv, got {text}, which has none; "
                                 f"run python -m experiments.report {text} first")
    roots.append(root)
  out = sweep_lib.check_root(args.out, "--out", create=True)
  depth_normals_roots = []
  for root in roots:
    with (root / "report.csv").open() as f:
      columns = next(csv.reader(f), [])
    if any(key in columns for key, _, _ in DEPTH_NORMALS_METRICS):
      depth_normals_roots.append(root)
    figures = ([miou_bars] if "val/miou" in columns else []) + [erf_strip]
    for figure in figures:
      path = figure(root, out)
      if path is not None:
        print(f"wrote {path}")
  if depth_normals_roots:
    print(f"wrote {depth_normals_panels(depth_normals_roots, out)}")
  return 0


def main(argv=None) -> int:
  """The command line (module docstring); bad input (a root without report.csv, a column that is not a
  number, an --out that cannot be written) is one `ERROR:` line on stderr and exit 2."""
  from dense_jax.train import cli  # pylint: disable=g-import-not-at-top
  try:
    return _main(argv)
  except ValueError as e:   # SweepError, RemotePathError, and the figures' own checks of report.csv
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return cli.EXIT_BAD_CONFIG


if __name__ == "__main__":
  sys.exit(main())
