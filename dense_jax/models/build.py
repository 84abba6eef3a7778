"""Config -> model: the one place that turns a config's `model` and `dataset` blocks into a module, and
the one function that calls a model (the trainer, `dense_jax.evaluation`, `dense_jax.evaluate`,
`dense_jax.tools.restore`, colabs and experiments use these; nothing here imports `dense_jax.train`).

    model, info, image_size = build_model(config)
    outputs = apply_model(model, variables, images, train=False)       # {task name: output}

`build_model`: `config.model` minus `name` are the model's keyword arguments (lists from a saved
`config.json` become tuples), `num_classes` defaults to the dataset's, `compute_dtype='bfloat16'` adds
`dtype=jnp.bfloat16`, a model with `check_dataset(info)` (the detectors) checks itself against the
dataset (`config.model.num_classes` vs the dataset's class ids, ...); the image size is
`config.dataset.image_size` or the dataset's own (ValueError for a dataset of varying image size without one).

`apply_model`: `model.apply(variables, images, train=train, **kwargs)`, plus `targets=batch` when
training a model that declares `needs_targets = True` (see `dense_jax.models.registry`); checks that
the model returned a dict of outputs.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp


def image_size_of(config, info) -> tuple[int, int]:
  """`(H, W)` the model is trained at: `config.dataset.image_size` (int or pair) or the dataset's own."""
  size = config.dataset.get("image_size") or info.image_size
  if size is None:
    raise ValueError(f"config.dataset.image_size: dataset {config.dataset.name!r} has images of varying "
                     f"size; set image_size (e.g. --config.dataset.image_size=256)")
  return (size, size) if isinstance(size, int) else tuple(size)


def model_kwargs(config, info) -> dict[str, Any]:
  """The keyword arguments `config.model` gives its model (see the module docstring)."""
  kwargs = dict(config.model.to_dict() if hasattr(config.model, "to_dict") else config.model)
  kwargs.pop("name", None)
  kwargs.setdefault("num_classes", info.num_classes)
  for key, value in kwargs.items():   # config.json turns tuples into lists; modules want tuples
    if isinstance(value, list):
      kwargs[key] = tuple(value)
  if config.get("compute_dtype", "float32") == "bfloat16":
    kwargs["dtype"] = jnp.bfloat16
  return kwargs


def build_model(config) -> tuple[Any, Any, tuple[int, int]]:
  """`(model, dataset info, (H, W) image size)` for `config` (see the module docstring)."""
  from dense_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from dense_jax.models import registry  # pylint: disable=g-import-not-at-top
  info = data_lib.dataset_info(config.dataset.name)
  size = image_size_of(config, info)
  model = registry.get_model(config.model.name, **model_kwargs(config, info))
  check_model_against_dataset(model, info)
  return model, info, size


def check_model_against_dataset(model, info) -> None:
  """A model that defines `check_dataset(info)` (the detectors: class ids, keypoint count) checks that it
  can learn the dataset's labels; its ValueError is reported as `config.model.<field>: ...`, before
  anything is traced or compiled."""
  check = getattr(model, "check_dataset", None)
  if callable(check):
    try:
      check(info)
    except ValueError as e:
      raise ValueError(f"config.model.{e}") from None


def needs_targets(model) -> bool:
  """Whether `model` wants the batch (`targets=`) when training (a class attribute, default False)."""
  return bool(getattr(type(model), "needs_targets", False))


def apply_model(model, variables, images, *, train: bool, batch: dict | None = None, **kwargs):
  """`model.apply(variables, images, train=train, **kwargs)` (+ `targets=batch` when training a model
  with `needs_targets`); the outputs dict (or `(outputs, updated variables)` with `mutable=`)."""
  if train and needs_targets(model):
    if batch is None:
      raise ValueError(f"batch: {type(model).__name__} needs the targets when training, got None")
    kwargs["targets"] = batch
  result = model.apply(variables, images, train=train, **kwargs)
  outputs = result[0] if "mutable" in kwargs else result
  if not isinstance(outputs, dict):
    raise ValueError(f"model {type(model).__name__}: expected an output dict {{task name: array}} (see "
                     f"dense_jax.models.registry), got {type(outputs).__name__}")
  return result


def output_shapes(model, image_size: tuple[int, int], batch_size: int = 1) -> dict:
  """`{name: ShapeDtypeStruct}` the model outputs for `(batch_size, H, W, 3)` images (traced, not run)."""
  images = jax.ShapeDtypeStruct((batch_size, *image_size, 3), jnp.float32)
  key = jax.random.PRNGKey(0)
  outputs, _ = jax.eval_shape(functools.partial(model.init_with_output, train=False),
                              {"params": key, "dropout": key}, images)
  return outputs


def primary_output(outputs, name: str | None = None):
  """One output of a model's dict for tools that analyse a single map (receptive fields, FLOPs): entry
  `name`, else 'semantic', else the first; a non-dict (a plain module) is returned as it is."""
  if not isinstance(outputs, dict):
    return outputs
  if name is not None:
    return outputs[name]
  return outputs["semantic"] if "semantic" in outputs else next(iter(outputs.values()))


def init_variables(model, rng: jax.Array, image_size: tuple[int, int]) -> dict:
  """`model.init` at `(1, H, W, 3)` with `rng` for the weights and dropout (random initialisation)."""
  return model.init({"params": rng, "dropout": rng}, jnp.zeros((1, *image_size, 3)), train=False)


def plan_init(config, model, image_size: tuple[int, int]):
  """The `config.init` placement for `model` (`dense_jax.convert.init_from.Plan`), or None when the
  config has no `init.path`; reads the file, computes no weights (ValueError for bad input)."""
  from dense_jax.convert import init_from  # pylint: disable=g-import-not-at-top
  init = config.get("init")
  if not init_from.is_set(init):
    return None
  abstract = jax.eval_shape(functools.partial(init_variables, model, image_size=image_size),
                            jax.random.PRNGKey(0))
  return init_from.place(abstract, init_from.read_source(init), init)


def initial_variables(config, rng: jax.Array) -> tuple[dict, dict | None]:
  """`(variables, report)`: the model of `config` initialised from `rng`, with `config.init` applied.

  `report` is what the trainer writes to `init_report.json` (`dense_jax.convert.init_from.report_dict`:
  counts, loaded arrays, arrays left at init with the reason, unused file arrays), or None when the
  config has no `init.path` (a random initialisation). The trainer, `evaluate`, colabs and tools start
  a model here; the trainer draws `rng` as the first half of `split(PRNGKey(config.seed))`.
  """
  from dense_jax.convert import init_from  # pylint: disable=g-import-not-at-top
  model, _, image_size = build_model(config)
  plan = plan_init(config, model, image_size)
  variables = init_variables(model, rng, image_size)
  if plan is None:
    return variables, None
  return init_from.apply(variables, plan), init_from.report_dict(plan)
