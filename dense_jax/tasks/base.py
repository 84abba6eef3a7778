"""The task interface: what the engine needs to know about one kind of label.

A *task* owns, for one label type (semantic classes, depth, normals, ...):

  name                   the key of the model output it reads (`outputs[name]`) and of its config block
  batch_keys             dataset keys it reads besides `image` (they drive `create_iterator(keys=...)`)
  pixel_keys             which of them are per-pixel maps `(B, H, W, ...)` (sharded like the image)
  weight                 its weight in the train loss (the engine sums `weight * loss`)
  loss(outputs, batch)   -> (scalar, {metric: scalar})      masked, normalised by the valid items
  init()                 -> accumulator (a pytree of arrays)     \
  update(acc, outputs, batch) -> accumulator (jit-able)          | evaluation; padded examples
  to_host(acc)           -> host accumulator (default: 64 bits)  | (batch['batch_mask'] == 0)
  combine(a, b)          -> accumulator (default: leafwise sum)  | count for nothing
  result(acc)            -> {metric: float}  (host, NumPy)      /
  write_outputs(acc, directory, stem) -> {label: path}  result files of an evaluation (default none)
  summary_keys()         -> {result key: label}: the headline numbers printed after an evaluation
  unflip(output)         undo a horizontal flip of a prediction (TTA)
  merge([output, ...])   one prediction from several (TTA; default: the mean, renormalised for unit
                         vectors)
  predict(output)        the prediction as drawn / compared (semantic: the argmax)
  draw(image, prediction, example) -> [(title, (H, W, 3) uint8), ...]  truth and prediction panels

`outputs` is the model's whole output dict `{task name: array}`, so a task may also read auxiliary
entries (e.g. `semantic_aux`). `batch` is the global batch dict (arrays with the batch first).

Conventions every task follows:
- Masking: an example with `batch['batch_mask'] == 0` (the padding of the last evaluation batch) or a
  pixel/item without that label contributes nothing to the loss or the accumulator; a loss is a sum
  over valid items divided by max(count of valid items, 1), over the whole global batch (so it does
  not depend on the device split).
- Accumulators are additive: the engine evaluates `update(init(), outputs, batch)` per batch under
  `jit` and folds the results on the host with `combine` in 64-bit (ints -> int64, floats -> float64),
  so counts never overflow int32 over a large split and the sum is the same whatever the batching.
- Metric keys: `loss` aux keys and `result` keys are reported as the task names them (the engine
  prefixes evaluation keys with `val/`); two tasks of a run must not produce the same key (the engine
  checks). A task other than the historical `semantic` should put its name in its keys
  (e.g. `depth/rmse`).
- Model outputs smaller than the input (the valid-convolution U-Net) are compared with the centre of
  the label maps (`centre_crop`).

To add a task: subclass `Task` in a module (under `dense_jax/tasks/` it registers itself on import;
elsewhere, import the module before training), decorate it with `@register_task("name")`, and list it
in a config: `config.tasks = {"semantic": {"weight": 1.0}, "name": {"weight": 0.5, ...}}` (the block's
other keys go to the constructor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np


def centre_crop(x, size: tuple[int, int]):
  """The centre `size = (h, w)` window of a map `(B, H, W, ...)`; identity when the sizes agree."""
  h, w = size
  if x.ndim < 3:
    raise ValueError(f"x: expected a map (B, H, W, ...), got shape {x.shape}")
  if x.shape[1] < h or x.shape[2] < w:
    raise ValueError(f"x: expected at least the output's spatial size {(h, w)}, got shape {x.shape}")
  if (h, w) == tuple(x.shape[1:3]):
    return x
  dh, dw = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
  return x[:, dh:dh + h, dw:dw + w]


def example_mask(batch, batch_size: int | None = None):
  """`(B,)` bool: the real examples of `batch` (all of them when it carries no `batch_mask`)."""
  if "batch_mask" in batch:
    return batch["batch_mask"] > 0
  if batch_size is None:
    batch_size = next(iter(batch.values())).shape[0]
  return jnp.ones((batch_size,), bool)


def _to_host64(x):
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
    return x.astype(np.int64)
  if np.issubdtype(x.dtype, np.floating):
    return x.astype(np.float64)
  return x


def host_accumulator(acc):
  """A device accumulator as NumPy arrays in 64 bits (ints -> int64, floats -> float64)."""
  return jax.tree.map(_to_host64, jax.device_get(acc))


class Task:
  """Base class of a task (see the module docstring). Subclasses set `batch_keys` and implement
  `loss`, `init`, `update`, `result`; the rest has defaults."""

  default_name: ClassVar[str | None] = None   # set by @register_task
  batch_keys: tuple[str, ...] = ()
  pixel_keys: tuple[str, ...] = ()
  # TTA: channels of the prediction whose sign changes under a horizontal flip (normals: (0,), the x
  # component), and whether predictions are unit vectors along the last axis (renormalised after merge).
  flip_negate_channels: ClassVar[tuple[int, ...]] = ()
  unit_vectors: ClassVar[bool] = False

  def __init__(self, *, info=None, name: str | None = None, weight: float = 1.0):
    self.info = info
    self.name = name or self.default_name or type(self).__name__.lower()
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
      raise ValueError(f"config.tasks.{self.name}.weight: expected a finite number >= 0, got {weight!r}")
    self.weight = float(weight)

  def __repr__(self) -> str:
    return f"{type(self).__name__}(name={self.name!r}, weight={self.weight}, batch_keys={self.batch_keys})"

  # ---- checks before compiling -----------------------------------------------------------------
  def check_dataset(self, info) -> None:
    """ValueError unless the dataset `info` (a `DatasetInfo`) has every key this task reads."""
    missing = [k for k in self.batch_keys if k not in info.keys]
    if missing:
      raise ValueError(f"config.tasks.{self.name}: the task needs the batch keys {missing}, which dataset "
                       f"{info.name!r} does not have; it offers {list(info.keys)}")

  def check_outputs(self, outputs: dict, model_name: str = "the model") -> None:
    """ValueError unless the model's output dict (arrays or ShapeDtypeStructs) has this task's entry."""
    if not isinstance(outputs, dict):
      raise ValueError(f"model {model_name!r}: expected an output dict {{task name: array}}, got "
                       f"{type(outputs).__name__}")
    if self.name not in outputs:
      raise ValueError(f"config.tasks.{self.name}: model {model_name!r} does not output {self.name!r}; it "
                       f"outputs {sorted(outputs)}")

  # ---- training -------------------------------------------------------------------------------
  def loss(self, outputs: dict, batch: dict) -> tuple[jax.Array, dict]:
    """`(scalar loss, {metric name: scalar})` of the task's output against its labels."""
    raise NotImplementedError

  # ---- evaluation -----------------------------------------------------------------------------
  def init(self) -> Any:
    """The empty accumulator (a pytree of arrays)."""
    raise NotImplementedError

  def update(self, acc, outputs: dict, batch: dict) -> Any:
    """`acc` plus this batch's contribution (jit-able; padded examples contribute nothing)."""
    raise NotImplementedError

  def combine(self, a, b) -> Any:
    """Two accumulators folded into one (default: leafwise sum)."""
    return jax.tree.map(lambda x, y: x + y, a, b)

  def to_host(self, acc) -> Any:
    """One batch's device accumulator on the host, before `combine` (default: `host_accumulator`, 64 bits).
    A task whose accumulator is a host object (e.g. COCO detections for pycocotools) returns the arrays
    as they are and builds that object in `combine` / `result`."""
    return host_accumulator(acc)

  def result(self, acc) -> dict:
    """`{metric name: float}` from an accumulator (host side, NumPy)."""
    raise NotImplementedError

  def write_outputs(self, acc, directory, stem: str) -> dict[str, str]:
    """Writes the task's own result files for a finished evaluation (e.g. COCO-format results JSON) into
    `directory`, names starting with `stem`; `{label: path}` of the files (default: none)."""
    del acc, directory, stem
    return {}

  def summary_keys(self) -> dict[str, str]:
    """`{result key: label}` of the headline numbers printed after an evaluation (default: none)."""
    return {}

  # ---- prediction -----------------------------------------------------------------------------
  def predict(self, output):
    """What the task's output means as a prediction (default: the output itself)."""
    return output

  def unflip(self, output):
    """Undoes a horizontal flip of a prediction `(B, H, W, C)` made on a mirrored image: mirror it back
    and negate the channels in `flip_negate_channels` (the x component of a vector field)."""
    output = jnp.flip(output, axis=2)
    if self.flip_negate_channels:
      sign = np.ones(output.shape[-1], np.float32)
      sign[list(self.flip_negate_channels)] = -1.0
      output = output * jnp.asarray(sign, output.dtype)
    return output

  def merge(self, outputs: Sequence):
    """One prediction from several of the same geometry (TTA): the mean; unit vectors are renormalised
    (`v / max(|v|, eps)`)."""
    if not outputs:
      raise ValueError("outputs: expected at least one prediction to merge, got none")
    mean = sum(jnp.asarray(o, jnp.float32) for o in outputs) / len(outputs)
    if self.unit_vectors:
      mean = mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
    return mean

  # ---- drawing --------------------------------------------------------------------------------
  def draw(self, image: np.ndarray, prediction: np.ndarray, example: dict) -> list[tuple[str, np.ndarray]]:
    """`[(title, (H, W, 3) uint8), ...]`: the panels showing one example's ground truth and prediction
    (`prediction` is `predict(output)` for the example, without the batch axis; `example` the host
    batch's row). Default: none."""
    del image, prediction, example
    return []


def merge_probabilities(outputs: Sequence):
  """TTA merge of class (or bin) logits: `log(mean softmax(o))` over the last axis, in float32, the mean
  clamped at the smallest normal float32 before the log. The result is used like logits (argmax,
  softmax, losses)."""
  if not outputs:
    raise ValueError("outputs: expected at least one prediction to merge, got none")
  probs = sum(jax.nn.softmax(jnp.asarray(o, jnp.float32), axis=-1) for o in outputs) / len(outputs)
  return jnp.log(jnp.maximum(probs, jnp.finfo(jnp.float32).tiny))


class SinglePredictionTask(Task):
  """A task whose predictions can be neither mirrored back nor averaged (detections, segment maps):
  `unflip` raises, `merge` returns a single prediction and raises for more. The errors say
  "test-time flips are not defined for {flip_refusal}" and "test-time augmentation cannot average
  {n} {merge_refusal}"; both texts end with how to evaluate instead."""

  flip_refusal: ClassVar[str] = "this task's predictions"
  merge_refusal: ClassVar[str] = "predictions of this task"

  def unflip(self, output):
    raise ValueError(f"config.tasks.{self.name}: test-time flips are not defined for {self.flip_refusal}")

  def merge(self, outputs):
    if len(outputs) == 1:
      return outputs[0]
    raise ValueError(f"config.tasks.{self.name}: test-time augmentation cannot average {len(outputs)} "
                     f"{self.merge_refusal}")
