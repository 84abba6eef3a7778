"""The trainer's config schema: required keys, defaults for the optional ones, validation.

Required (an experiment file must set them):
  seed              int >= 0; parameters, the step RNG and the data order derive from it
  total_steps       int >= 1; optimizer steps of the whole run (the schedule spans them)
  batch_size        int; the *global* batch (over all devices and processes)
  mesh_shape        (data, model) sizes, one may be -1 = "the rest of the devices"
  log_every, eval_every, checkpoint_every   ints >= 1 (in steps)
  model             ConfigDict: `name` (registered in dense_jax.models) + the model's own arguments
  dataset           ConfigDict: `name` (registered in dense_jax.data) + the keys of DATASET_DEFAULTS
  optimizer         ConfigDict, see dense_jax.train.optimizers

Optional (defaults in OPTIONAL_DEFAULTS): keep_checkpoints, async_checkpoints, eval_batch_size,
eval_max_batches, sharding.{params, spatial}, compute_dtype, num_figures, tensorboard, stop_at_step,
num_devices, cpu_devices, experiment (a free block the trainer ignores, for experiment-specific values),
tasks (`{name: {"weight": w, ...}}`, default one semantic task; see dense_jax.tasks.build), init (start
from a torchvision file or another run; `path=None` = random; see dense_jax.convert.init_from).

`resolve(config)` returns a copy with the defaults filled in, or raises ValueError naming every unknown
key — before anything is built or compiled, so a typo never costs a compile or a silent default.
"""

from __future__ import annotations

import ml_collections

from dense_jax.convert import init_from
from dense_jax.train import optimizers

REQUIRED = ("seed", "total_steps", "batch_size", "mesh_shape", "log_every", "eval_every",
            "checkpoint_every", "model", "dataset", "optimizer")

DATASET_DEFAULTS = dict(
    name=None,               # e.g. 'dense_shapes/small_64'
    image_size=None,         # None = the dataset's own size
    data_dir=None,           # where the dataset's files are (None = its default)
    train_split="train",
    eval_split="validation",
    augment=True,            # the pipeline's default paired augmentations for training
    input_shards=None,       # input streams the global batch is assembled from; None = process count
    num_threads=2,           # pipeline worker threads per input shard
)

OPTIONAL_DEFAULTS = dict(
    keep_checkpoints=3,      # newest checkpoints kept
    async_checkpoints=True,
    eval_batch_size=None,    # None = batch_size
    eval_max_batches=None,   # None = the whole evaluation split
    sharding=dict(
        params=((".*", "replicated"),),  # (regex, spec) rules, see dense_jax.train.sharding
        spatial=False,       # split image height over the 'model' axis
    ),
    compute_dtype="float32",  # 'bfloat16' = mixed precision (float32 parameters and optimizer)
    num_figures=4,           # validation examples drawn as PNG at each evaluation
    tensorboard=True,        # TensorBoard event files (needs tensorflow)
    stop_at_step=None,       # stop (and save) after this step, schedule unchanged; resume later
    num_devices=None,        # use the first n devices only (single-process runs); None = all
    cpu_devices=None,        # split a CPU-only host into n JAX devices (data parallelism over cores)
    experiment={},           # free-form, ignored by the trainer
    tasks=dict(semantic=dict(weight=1.0)),   # {task name: {weight, <task arguments>}}, see dense_jax.tasks
    init=dict(path=None, source="auto", include=None, exclude=None, strict=False),  # dense_jax.convert.init_from
)


def default_config() -> ml_collections.ConfigDict:
  """A config holding every optional key at its default (and the dataset block's keys), for experiment
  files to start from — so that any key can be overridden with `--config.key=value`, which only
  reaches keys the config already has. The required keys are left for the experiment to set."""
  config = ml_collections.ConfigDict(OPTIONAL_DEFAULTS)
  config.dataset = ml_collections.ConfigDict(DATASET_DEFAULTS)
  return config


def _unknown(block, allowed, where: str) -> None:
  unknown = sorted(set(block.keys()) - set(allowed))
  if unknown:
    raise ValueError(f"{where}: unknown keys {unknown}; expected a subset of {sorted(allowed)}")


def _positive_int(config, key: str) -> None:
  value = config[key]
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"config.{key}: expected an int >= 1, got {value!r}")


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A validated copy of `config` with every optional key present (see the module docstring)."""
  config = ml_collections.ConfigDict(config.to_dict() if hasattr(config, "to_dict") else dict(config))
  missing = [k for k in REQUIRED if k not in config]
  if missing:
    raise ValueError(f"config: missing required keys {missing}")
  _unknown(config, set(REQUIRED) | set(OPTIONAL_DEFAULTS), "config")
  with config.unlocked():
    for key, default in OPTIONAL_DEFAULTS.items():
      if key not in config:
        config[key] = default
      elif key in ("sharding", "init"):
        if config[key] is None:
          config[key] = default
        _unknown(config[key], default, f"config.{key}")
        for sub, value in default.items():
          if sub not in config[key]:
            config[key][sub] = value
    _unknown(config.dataset, DATASET_DEFAULTS, "config.dataset")
    for key, default in DATASET_DEFAULTS.items():
      if key not in config.dataset:
        config.dataset[key] = default
    if config.eval_batch_size is None:
      config.eval_batch_size = config.batch_size
  for key in ("total_steps", "batch_size", "log_every", "eval_every", "checkpoint_every",
              "keep_checkpoints", "eval_batch_size"):
    _positive_int(config, key)
  if isinstance(config.seed, bool) or not isinstance(config.seed, int) or not 0 <= config.seed < 2 ** 31:
    raise ValueError(f"config.seed: expected an int in [0, 2**31), got {config.seed!r}")
  if not config.model.get("name"):
    raise ValueError("config.model.name: expected a registered model name (see "
                     "dense_jax.models.available_models())")
  if not config.dataset.get("name"):
    raise ValueError("config.dataset.name: expected a registered dataset name (see dense_jax.data.available())")
  if config.compute_dtype not in ("float32", "bfloat16"):
    raise ValueError(f"config.compute_dtype: expected 'float32' or 'bfloat16', got {config.compute_dtype!r}")
  if config.stop_at_step is not None and not (isinstance(config.stop_at_step, int) and config.stop_at_step >= 1):
    raise ValueError(f"config.stop_at_step: expected None or an int >= 1, got {config.stop_at_step!r}")
  if config.num_devices is not None and not (isinstance(config.num_devices, int) and config.num_devices >= 1):
    raise ValueError(f"config.num_devices: expected None or an int >= 1, got {config.num_devices!r}")
  if config.cpu_devices is not None and not (isinstance(config.cpu_devices, int) and config.cpu_devices >= 1):
    raise ValueError(f"config.cpu_devices: expected None or an int >= 1, got {config.cpu_devices!r}")
  optimizers.check_optimizer_config(config.optimizer)
  init_from.check_init_config(config.init)
  return config


def apply_cpu_devices(config) -> None:
  """Makes JAX's CPU backend `config.cpu_devices` devices, if set — possible only before JAX runs
  anything (the command line calls this first). Why: XLA:CPU spreads one device's many small ops
  poorly over cores; one device per core running its share of the batch (data parallelism, the
  same global-batch semantics) trains the quick U-Net faster (docs/results.md). Leaves an explicit
  `--xla_force_host_platform_device_count` in XLA_FLAGS alone; on a GPU/TPU host it changes nothing
  the run uses. Once the backend is up it only prints a note if the count differs.
  """
  import os  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top
  n = config.get("cpu_devices") if hasattr(config, "get") else None
  if not n or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return
  try:
    jax.config.update("jax_num_cpu_devices", int(n))
    if n > 1 and "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
      # One device per core: each device runs single-threaded instead of all of them fighting over
      # one shared intra-op pool.
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
  except RuntimeError:
    have = len(jax.devices("cpu"))
    if have != n:
      print(f"note: config.cpu_devices={n} not applied: JAX's CPU backend is already running with {have} "
            f"device(s) (set it before JAX starts, as `python -m dense_jax.train` does)", flush=True)
