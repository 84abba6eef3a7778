"""The figures of docs/results.md, from sweep roots that went through evaluate_breakdown and report.

    python -m experiments.results_figures --out docs/results \\
        runs/dilation_vs_downsampling runs/receptive_field runs/upsampling

Per sweep root: `<name>_miou.png` — grouped bars of mIoU overall, in the boundary band, in the
interior, on small and on large objects, one group per run (from the root's report.csv); and, where the
runs saved one, `<name>_erf.png` — every run's trained effective receptive field (erf.png) side by side.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys

METRICS = (("val/miou", "all"), ("val/band/miou", "boundary band"), ("val/interior/miou", "interior"),
           ("val/small/miou", "small objects"), ("val/large/miou", "large objects"))


def miou_bars(root: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = list(csv.DictReader(open(root / "report.csv")))
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
  path = out / f"{root.name}_miou.png"
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def erf_strip(root: pathlib.Path, out: pathlib.Path) -> pathlib.Path | None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rows = list(csv.DictReader(open(root / "report.csv")))
  images = [Image.open(root / r["run"] / "erf.png").convert("RGB") for r in rows
            if (root / r["run"] / "erf.png").exists()]
  if not images:
    return None
  w, h = images[0].size
  strip = Image.new("RGB", (w * len(images), h), "white")
  for i, image in enumerate(images):
    strip.paste(image, (i * w, 0))
  path = out / f"{root.name}_erf.png"
  strip.save(path)
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("roots", nargs="+", type=pathlib.Path)
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/results"))
  args = parser.parse_args(argv)
  args.out.mkdir(parents=True, exist_ok=True)
  for root in args.roots:
    for path in (miou_bars(root, args.out), erf_strip(root, args.out)):
      if path is not None:
        print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
