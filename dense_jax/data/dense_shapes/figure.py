"""A PNG grid of `dense_shapes` examples with every label drawn (for the README and for eyeballing).

  python -m dense_jax.data.dense_shapes.figure --out dense_shapes.png [--config small_64] [--num 4]

Rows are examples (generated directly from their seeds, the same as the TFDS splits hold); columns:
image, semantic, instances (masks + boxes), panoptic, depth, normals, keypoints (x = visible corner,
o = occluded corner, slot number next to it).
"""

from __future__ import annotations

import argparse

import numpy as np

from dense_jax import paths, viz
from dense_jax.data.dense_shapes import config as config_lib, scene


def draw(examples: list[dict], cfg: config_lib.SceneConfig, out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib import patches

  names = cfg.classes.names
  class_pal = viz.palette(len(names))[:len(names)] / 255.0   # the trainer's class colours
  cols = ("image", "semantic", "instances", "panoptic", "depth", "normals", "keypoints")
  fig, axes = plt.subplots(len(examples), len(cols), figsize=(2.1 * len(cols), 2.1 * len(examples)),
                           squeeze=False)
  for r, ex in enumerate(examples):
    img = ex["image"]
    n = int(ex["num_instances"])
    inst_pal = viz.id_palette(cfg.max_instances + 1, seed=7)
    inst = np.zeros(img.shape[:2], int)
    for i in range(n):
      inst[ex["masks"][i] > 0] = i + 1
    panels = {
        "image": img,
        "semantic": viz.colour_labels(ex["semantic"], len(names)),
        "instances": 0.35 * img / 255.0 + 0.65 * inst_pal[inst],
        "panoptic": viz.id_palette(cfg.num_segments + 1, seed=11)[ex["panoptic"]],
        "depth": ex["depth"],
        "normals": viz.normals_colours(ex["normals"]),   # y up in colour: green = up
        "keypoints": img,
    }
    for c, col in enumerate(cols):
      ax = axes[r, c]
      if col == "depth":
        ax.imshow(np.log(panels[col]), cmap="viridis_r", interpolation="nearest")
      else:
        ax.imshow(panels[col], interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(col, fontsize=9)
      if col == "instances":
        for i in range(n):
          y0, x0, y1, x1 = ex["boxes"][i]
          ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                         ec=inst_pal[i + 1], lw=1))
          ax.text(x0 - 0.5, y0 - 0.5, names[ex["classes"][i]], fontsize=5, color="white",
                  va="bottom", bbox=dict(fc="black", alpha=0.5, pad=0.5, lw=0))
      if col == "keypoints":
        for i in range(n):
          for k, (x, y, v) in enumerate(ex["keypoints"][i]):
            if v > 0:
              ax.plot(x - 0.5, y - 0.5, "x" if v == 2 else "o", ms=4, mew=1.2,
                      color="yellow" if v == 2 else "red", mfc="none")
              ax.text(x + 0.5, y - 0.5, str(k), fontsize=5, color="white")
  # Legend of semantic classes under the grid.
  handles = [patches.Patch(color=class_pal[i], label=f"{i} {nm}") for i, nm in enumerate(names)]
  fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 9), fontsize=7, frameon=False)
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  with paths.as_path(out).open("wb") as f:
    fig.savefig(f, dpi=110, format=paths.as_path(out).suffix[1:] or "png")
  plt.close(fig)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="PNG file to write")
  parser.add_argument("--config", default="small_64", choices=sorted(config_lib.CONFIGS))
  parser.add_argument("--num", type=int, default=4, help="number of examples (rows)")
  parser.add_argument("--split", default="train")
  parser.add_argument("--start", type=int, default=0, help="index of the first example")
  args = parser.parse_args(argv)
  cfg = config_lib.CONFIGS[args.config]
  examples = [scene.generate_example(scene.example_seed(cfg, args.split, args.start + i), cfg)
              for i in range(args.num)]
  draw(examples, cfg, args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
