"""A config's model and a run's trained variables, for analysis after training (read-only).

    config = load_run_config("runs/rf/exponential")        # the run's resolved config.json
    model, info, image_size = build_model(config)           # as dense_jax.train builds it
    step, variables = restore_variables(config, "runs/rf/exponential")   # newest checkpoint

The model is built the way the trainer builds it (`config.model` minus `name` as keyword arguments,
`num_classes` from the dataset, bfloat16 compute if the config says so). Restoring builds the abstract
`TrainState` the trainer saved (same model, same optimizer from `config.optimizer`) and reads the
newest step of `<workdir>/checkpoints` with orbax in read-only mode: nothing in the run's directory is
written, moved or cleaned up, so this is safe to run next to (or after) training.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dense_jax import paths
from dense_jax.train.workdir import CHECKPOINTS, CONFIG_FILE


def load_run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The resolved config a run wrote into its workdir."""
  path = paths.as_path(workdir) / CONFIG_FILE
  if not path.exists():
    raise ValueError(f"workdir: expected a run directory with {CONFIG_FILE}, got {workdir} (no such file)")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def build_model(config):
  """`(model, dataset info, (H, W) image size)` for `config`, as `dense_jax.train` builds them (this is
  `dense_jax.models.build.build_model`, kept here for the callers of this module)."""
  from dense_jax.models import build  # pylint: disable=g-import-not-at-top
  return build.build_model(config)


def init_variables(config, model, image_size) -> dict:
  """The run's initial variables as the trainer made them: drawn from `config.seed`, with `config.init`
  applied (`dense_jax.models.build.initial_variables`; `model` and `image_size` are `config`'s)."""
  from dense_jax.models import build  # pylint: disable=g-import-not-at-top
  del model, image_size   # rebuilt from config, as the trainer does
  return build.initial_variables(config, jax.random.split(jax.random.PRNGKey(config.seed))[0])[0]


def abstract_train_state(config, model, image_size):
  """The `TrainState` the trainer saves for `config`, as ShapeDtypeStructs on the first device."""
  # pylint: disable=g-import-not-at-top
  from dense_jax.train import config as config_lib, optimizers
  from dense_jax.train.state import init_train_state
  config = config_lib.resolve(config)
  tx, _ = optimizers.make_optimizer(config.optimizer, config.total_steps)
  sample = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.float32)
  abstract = jax.eval_shape(functools.partial(init_train_state, model, tx), jax.random.PRNGKey(0), sample)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)


def latest_step(workdir: str | os.PathLike) -> int | None:
  """The newest finished checkpoint step of a run (orbax only renames a step into place when complete)."""
  directory = paths.as_path(workdir) / CHECKPOINTS
  if not directory.is_dir():
    return None
  steps = [int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()]
  return max(steps) if steps else None


def restore_variables(config, workdir: str | os.PathLike, step: int | None = None) -> tuple[int, dict]:
  """`(step, {'params': ..., ['batch_stats': ...]})` of the newest (or the given) checkpoint of a run.

  Without `step`, a newest checkpoint that fails to read (truncated or damaged files) is skipped with
  one warning line and the previous one is used, as the trainer does on resume, but read-only: nothing
  is moved. A checkpoint that reads but holds another state structure than `config` builds raises
  `dense_jax.train.checkpoint.CheckpointMismatchError` (a ValueError) at once: an older step would not
  fit either. ValueError when no checkpoint (or not the given `step`) can be read.
  """
  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp

  from dense_jax.train import checkpoint as checkpoint_lib
  model, _, image_size = build_model(config)
  directory = paths.absolute(paths.as_path(workdir) / CHECKPOINTS)
  if step is None:
    steps = sorted((int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
                   reverse=True) if directory.is_dir() else []
  else:
    steps = [step]
  if not steps:
    raise ValueError(f"workdir: expected checkpoints under {directory}, found none (has the run saved yet?)")
  abstract = abstract_train_state(config, model, image_size)
  expected = checkpoint_lib.state_structure(abstract)
  manager = ocp.CheckpointManager(directory, item_names=("state", "data"), options=ocp.CheckpointManagerOptions(
      read_only=True, create=False, save_interval_steps=0))   # 0: orbax warns that read_only sets it so
  damaged = []
  try:
    for s in steps:
      try:
        saved = checkpoint_lib.saved_state_structure(directory / str(s))
      except Exception as e:  # pylint: disable=broad-except  # unreadable metadata: the step is damaged
        damaged.append((s, e))
        continue
      differences = checkpoint_lib.structure_differences(saved, expected)
      if differences:
        raise checkpoint_lib.CheckpointMismatchError(
            f"checkpoint {directory / str(s)} holds a state of another structure than this config builds "
            f"({'; '.join(differences)})")
      try:
        restored = manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
      except Exception as e:  # pylint: disable=broad-except  # the structure fits: the files are damaged
        damaged.append((s, e))
        continue
      for bad, error in damaged:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"WARNING: checkpoint {directory / str(bad)} is damaged ({type(error).__name__}: {reason}); "
              f"using step {s} instead (nothing was moved).", flush=True)
      return s, restored["state"].variables()
  finally:
    manager.close()
  reasons = "; ".join(f"step {s}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:150]}"
                      for s, e in damaged)
  raise ValueError(f"workdir: no checkpoint under {directory} can be read ({reasons}); they are damaged — "
                   f"train again (python -m dense_jax.train resumes from the newest good one, or starts over "
                   f"if none is left)")


def validation_images(config, count: int, image_size) -> np.ndarray:
  """The first `count` images of the config's evaluation split, `(count, H, W, 3)` float32 in [0, 1]."""
  from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  it = data_lib.create_iterator(config.dataset.name, config.dataset.get("eval_split", "validation"),
                                global_batch_size=count, seed=0, train=False, image_size=image_size,
                                data_dir=config.dataset.get("data_dir"), keys=("image",),
                                process_index=0, process_count=1)
  try:
    return np.asarray(next(iter(it))["image"], np.float32)
  finally:
    it.close()
