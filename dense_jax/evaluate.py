"""`python -m dense_jax.evaluate`: evaluate a trained run from the command line.

    python -m dense_jax.evaluate --config experiments/unet_dense_shapes.py:quick --workdir runs/unet_quick
    python -m dense_jax.evaluate --workdir runs/unet_quick --mode sliding --image_size 96   # config from the run
    python -m dense_jax.evaluate --workdir runs/unet_quick --mode multiscale --scales 0.75,1,1.25 --split train

Each flag is a field of `dense_jax.evaluation.settings.EvalSettings` (the defaults are its), except
`--config` (default: the run's own `config.json`; pass the experiment file when it registers something
the run needs, a dataset generated on the fly or a model) and `--workdir`. What is evaluated and which
files are written: `dense_jax.evaluation.workdir`. Exit status 0 done, 2 bad input (the command line,
the workdir, the config, a dataset's missing or damaged files), printed as one `ERROR: ...` line.

The library call, re-exported here:

    from dense_jax.evaluate import evaluate, result_paths
    result = evaluate(config, workdir, mode="sliding")      # the same, as a function returning a dict
"""

from __future__ import annotations

from dense_jax import inference
from dense_jax.evaluation import settings as settings_lib
from dense_jax.evaluation.settings import EvalSettings
from dense_jax.evaluation.workdir import evaluate, result_paths

__all__ = ["EvalSettings", "evaluate", "result_paths"]

_DEFAULTS = EvalSettings()


# Flags are defined only when run as a program, so importing this module defines none.
def _define_flags():
  # pylint: disable=g-import-not-at-top
  from absl import flags

  from dense_jax.train import cli
  cli.define_config_flag("Experiment file `path.py[:arg]` (default: the run's config.json).")
  flags.DEFINE_string("workdir", None, "The run's directory (with checkpoints/).")
  flags.DEFINE_enum("mode", _DEFAULTS.mode, list(settings_lib.MODES), "Inference mode.")
  flags.DEFINE_string("split", None, "Dataset split (default config.dataset.eval_split).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default the newest).")
  flags.DEFINE_list("image_size", None, "H[,W] the examples are brought to (default the training size).")
  flags.DEFINE_integer("batch_size", None, "Examples per call (default config.eval_batch_size).")
  flags.DEFINE_integer("max_batches", None, "Stop after this many batches (default the whole split).")
  flags.DEFINE_list("tile", None, "sliding: tile H[,W] (default the training size).")
  flags.DEFINE_list("stride", None, "sliding: stride H[,W] (default from --overlap).")
  flags.DEFINE_float("overlap", None, "sliding: overlap fraction of the tile (default 1/3).")
  flags.DEFINE_enum("window", _DEFAULTS.window, list(inference.WINDOWS), "sliding: blending window.")
  flags.DEFINE_integer("margin", _DEFAULTS.margin, "sliding: pixels at inner tile edges with weight 0.")
  flags.DEFINE_integer("tile_batch", None, "sliding: tiles per model call (default all).")
  flags.DEFINE_list("scales", [str(s) for s in _DEFAULTS.scales], "multiscale: resize factors.")
  flags.DEFINE_bool("flip", _DEFAULTS.flip, "multiscale: also the horizontal mirror.")
  flags.DEFINE_enum("multiscale_base", _DEFAULTS.multiscale_base, list(inference.MODES),
                    "multiscale: how each scale is predicted.")
  flags.DEFINE_integer("pad_to_multiple", None, "Pad images to this multiple (default: found from the model).")
  flags.DEFINE_integer("num_figures", _DEFAULTS.num_figures,
                       "Draw this many examples (truth and prediction) into a PNG.")
  flags.mark_flag_as_required("workdir")


def _pair_flag(values):
  """A list flag `H[,W]` -> None, H or (H, W)."""
  if values is None:
    return None
  ints = [int(v) for v in values]
  if len(ints) not in (1, 2):
    raise ValueError(f"expected H or H,W, got {','.join(values)}")
  return ints[0] if len(ints) == 1 else tuple(ints)


def main(argv) -> int:
  # pylint: disable=g-import-not-at-top
  import sys

  from absl import flags, logging
  if len(argv) > 1:
    print(f"ERROR: unexpected arguments {argv[1:]} (flags are --name=value; python -m dense_jax.evaluate "
          f"--helpshort lists them)", file=sys.stderr, flush=True)
    return 2
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  f = flags.FLAGS
  try:
    settings = EvalSettings(
        mode=f.mode, split=f.split, step=f.step, image_size=_pair_flag(f.image_size), batch_size=f.batch_size,
        max_batches=f.max_batches, tile=_pair_flag(f.tile), stride=_pair_flag(f.stride), overlap=f.overlap,
        window=f.window, margin=f.margin, tile_batch=f.tile_batch, scales=[float(s) for s in f.scales],
        flip=f.flip, multiscale_base=f.multiscale_base, pad_to_multiple=f.pad_to_multiple,
        num_figures=f.num_figures)
    evaluate(f.config, f.workdir, settings)
  except (ValueError, FileNotFoundError) as e:   # bad input; FileNotFoundError: a dataset's files are missing
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  import os
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import app

  from dense_jax.train import cli as _cli
  _define_flags()
  app.run(main, flags_parser=lambda argv: _cli.parse_flags(argv, "dense_jax.evaluate"))
