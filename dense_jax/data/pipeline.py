"""The input pipeline: a grain pipeline over a registered source, sharded per process, resumable.

  it = create_iterator('dense_shapes/small_64', 'train', global_batch_size=32, seed=0, train=True)
  batch = next(it)                  # dict of numpy arrays, leading dim = global_batch_size // process_count
  state = it.get_state()            # JSON-serialisable; save it with the checkpoint
  it.set_state(state)               # a fresh iterator resumes with exactly the batches that followed

What a batch holds: the dataset's keys (see `dense_jax.data.sources`) stacked to fixed shapes, with
`image` float32 in [0, 1] (NOT normalised by a mean/std: models do that), every label with its contract
dtype, plus `batch_mask` float32 (B,): 1 for real examples, 0 for the padding that fills the last
evaluation batches (train batches are all real). Per-example scalars (`num_instances`, `image_id`) are
stacked to (B,); the padding holds 0 in every key but `semantic` (the ignore label). Evaluation batches
of examples with an `image_id` also carry `original_size` int32 (B, 2): each source image's (h, w) before
`augment.eval_transform` resized it (`augment.eval_resized_size` gives the resized size; padding 0, 0),
so the detection tasks can write their results in the original image's pixels.

Order and randomness, all derived from `seed` (a non-negative int):
- Sharding: process p of P reads examples p, p + P, p + 2P, ... of the split (training drops the last
  `len % P` examples so every process has the same number; evaluation pads instead, with batch_mask 0).
- Training: each epoch visits the process's examples in a new order (grain's index shuffle seeded with
  seed + epoch); example `i` in epoch `e` is augmented with `np.random.default_rng([seed, e, i])`, so a
  batch depends only on (seed, epoch, position), not on threads, timing or restarts. Batches are full
  (drop remainder); `num_epochs=None` repeats forever.
- Evaluation (train=False): examples in order, no augmentation (only `augment.eval_transform`
  to `image_size`), one pass by default, the last batch padded.
Prefetching: `num_threads` threads decode and augment examples ahead of the consumer (threads, not
processes: numpy releases the GIL in the heavy parts and the machines this targets have few cores).

A file that cannot be read (a truncated or damaged image: `UnreadableFileError` of the real-dataset
loaders, or an OSError) or that holds labels that cannot be right (their `BadLabelError`) raises
`DataFileError` from `next(it)` (and from `create_iterator` for the first evaluation example), naming
the dataset, the split, the example and the file, and saying what to do; the trainer and
`python -m dense_jax.evaluate` print it as one line and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import grain
import numpy as np

from dense_jax.data import augment as augment_lib, sources

_STATE_VERSION = 1


class DataFileError(ValueError):
  """An example of a dataset cannot be read (a damaged or truncated file); the message names the
  dataset, split, example index and file, and what to do."""


def _unreadable(error: Exception, dataset: str, split: str, index: int, loader: str) -> DataFileError:
  from dense_jax.data.real._common import BadLabelError  # pylint: disable=g-import-not-at-top
  if getattr(error, "says_what_to_do", False):   # the loader's message names the file and the remedy
    return DataFileError(f"dataset {dataset!r}, split {split!r}, example {index}: {error}; then rerun (a "
                         f"training run resumes from its last checkpoint).")
  if isinstance(error, FileNotFoundError):
    what = "missing (an interrupted download, copy or extraction?)"
  elif isinstance(error, BadLabelError):
    what = "not the dataset's own (a damaged copy, or labels from elsewhere?)"
  else:
    what = "damaged or truncated (an interrupted download, copy or extraction?)"
  return DataFileError(
      f"dataset {dataset!r}, split {split!r}, example {index}: {error}. The file is {what}: "
      f"put the original back from the dataset's archive (re-extract it; "
      f"where to get the files is in the docstring of {loader}), "
      f"or delete that example's files so the loader no longer lists it, then rerun (a training run "
      f"resumes from its last checkpoint).")


def _fill_value(key: str, ignore_label: int) -> int:
  return ignore_label if key == "semantic" else 0


@dataclasses.dataclass(frozen=True)
class _ExampleFn:
  """Loads example `index` of the source and transforms it (a picklable callable for grain)."""
  source: Any
  train: bool
  seed: int
  size: tuple[int, int] | None
  augment: augment_lib.AugmentConfig | None
  keypoint_flip_perm: tuple
  ignore_label: int
  template: dict | None = None   # zero example for padding (evaluation)
  dataset: str = ""              # for error messages
  split: str = ""

  def __call__(self, element) -> dict:
    epoch, index = element
    if index < 0:
      return {**self.template, "batch_mask": np.float32(0.0)}
    from dense_jax.data.real._common import UnreadableFileError  # pylint: disable=g-import-not-at-top
    try:
      ex = dict(self.source[int(index)])
    except (UnreadableFileError, OSError, EOFError) as e:   # not a loader bug: keep those as they are
      loader = type(getattr(self.source, "_source", self.source)).__module__   # _KeySelect wraps it
      raise _unreadable(e, self.dataset, self.split, int(index), loader) from e
    if self.train and self.augment is not None:
      rng = np.random.default_rng([self.seed, int(epoch), int(index)])
      ex = augment_lib.random_augment(ex, rng, self.size, self.augment,
                                      keypoint_flip_perm=self.keypoint_flip_perm,
                                      ignore_label=self.ignore_label)
    else:
      # The source image's size (before the resize to `size`), for results files in its own pixels: only
      # in evaluation, where they name the dataset's images (`image_id`); dense_shapes' batches stay as
      # they were (and training without augmentation, which also comes here).
      original = None
      if not self.train and "image_id" in ex:
        original = augment_lib.example_size(ex)
      ex = augment_lib.eval_transform(ex, self.size, self.ignore_label)
      if original is not None:
        ex["original_size"] = np.asarray(original, np.int32)
    ex = {k: np.asarray(v) for k, v in ex.items()}
    ex["batch_mask"] = np.float32(1.0)
    return ex


class DataIterator:
  """Iterator over batches (dicts of numpy arrays) with `get_state`/`set_state` for checkpoints."""

  def __init__(self, dataset: grain.IterDataset, meta: dict):
    self._dataset = dataset
    self._iter = iter(dataset)
    self.meta = meta

  def __iter__(self) -> DataIterator:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iter)

  def get_state(self) -> dict:
    """The position (JSON-serialisable): restoring it replays exactly the batches that followed."""
    return {"version": _STATE_VERSION, "meta": dict(self.meta),
            "grain": json.loads(json.dumps(self._iter.get_state()))}

  def set_state(self, state: dict) -> None:
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION or "grain" not in state:
      raise ValueError(f"state: expected a dict from DataIterator.get_state (version {_STATE_VERSION}), "
                       f"got {str(state)[:200]}")
    if state["meta"] != self.meta:
      diff = {k: (state["meta"].get(k), v) for k, v in self.meta.items() if state["meta"].get(k) != v}
      raise ValueError(f"state: saved by a differently configured iterator; (saved, now) differ in {diff}")
    self._iter.set_state(state["grain"])

  def close(self) -> None:
    close = getattr(self._iter, "close", None)
    if close is not None:
      close()

  def __repr__(self) -> str:
    return f"DataIterator({self.meta})"


def _check_int(value, name: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
  return int(value)


def _process_defaults(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  process_count = _check_int(process_count, "process_count", 1)
  process_index = _check_int(process_index, "process_index", 0)
  if process_index >= process_count:
    raise ValueError(f"process_index: expected 0 <= process_index < process_count={process_count}, "
                     f"got {process_index}")
  return process_index, process_count


def create_iterator(dataset: str, split: str, *, global_batch_size: int, seed: int, train: bool,
                    image_size: int | tuple[int, int] | None = None, data_dir: str | None = None,
                    process_index: int | None = None, process_count: int | None = None,
                    num_epochs: int | None = None, augment: bool | augment_lib.AugmentConfig = True,
                    keys: tuple[str, ...] | None = None, num_threads: int = 2,
                    prefetch: int | None = None, num_workers: int = 0) -> DataIterator:
  """A resumable iterator over batches of `dataset`/`split` for this process (see module docstring).

  Args:
    dataset: a registered name (`sources.available()`), e.g. 'dense_shapes/small_64'.
    split: one of the dataset's splits.
    global_batch_size: examples per step over all processes; must divide by `process_count`.
    seed: non-negative int; shuffling and augmentation derive from it.
    train: shuffle + augment + repeat + drop remainder, else in-order one pass padded.
    image_size: output (H, W) (an int = square); default the dataset's own size.
    data_dir: where the dataset's files are (passed to the source factory).
    process_index, process_count: default `jax.process_index()` / `jax.process_count()`.
    num_epochs: None = forever for training, 1 for evaluation.
    augment: True = `AugmentConfig()` when training, False = none, or an AugmentConfig.
    keys: the example keys to keep (default all the dataset has); fewer keys = less work. Instance
      keys bring `num_instances` along, `image_id` when the dataset has it, and `boxes` unless
      `masks` is asked for (instances that leave the crop are dropped by their masks, else by their
      boxes); `keypoints` also `classes`. A source with a `with_keys(keys)` method is asked for
      only those keys (it may then skip decoding the rest).
    num_threads, prefetch: worker threads and examples buffered ahead (default 2 batches, >= 8).
    num_workers: 0 (default) runs everything in this process; > 0 moves the per-example work into
      that many worker processes (grain `mp_prefetch`), worth it only with spare cores. Workers
      take turns producing whole batches, so the batches differ from num_workers=0 (the same
      examples per epoch, grouped differently); for a fixed num_workers they are deterministic and
      resumable like the rest. Creating workers needs `if __name__ == '__main__':` in scripts.
  """
  info = sources.dataset_info(dataset)   # clear error for unknown names
  gbs = _check_int(global_batch_size, "global_batch_size", 1)
  seed = _check_int(seed, "seed", 0)
  if seed >= 2 ** 31:
    raise ValueError(f"seed: expected an int in [0, 2**31), got {seed}")
  pi, pc = _process_defaults(process_index, process_count)
  if gbs % pc:
    raise ValueError(f"global_batch_size: expected a multiple of process_count={pc}, got {gbs}")
  batch = gbs // pc
  if num_epochs is not None:
    num_epochs = _check_int(num_epochs, "num_epochs", 1)
  elif not train:
    num_epochs = 1
  if image_size is not None:
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
      raise ValueError(f"image_size: expected an int or (H, W) of positive ints, got {image_size!r}")
  else:
    size = info.image_size
    if size is None and train:
      raise ValueError(f"image_size: dataset {dataset!r} has images of varying size; pass image_size")
  if augment is True:
    aug = augment_lib.AugmentConfig() if train else None
  elif augment is False or augment is None:
    aug = None
  elif isinstance(augment, augment_lib.AugmentConfig):
    aug = augment
  else:
    raise ValueError(f"augment: expected a bool or an AugmentConfig, got {augment!r}")
  if keys is not None:
    unknown = sorted(set(keys) - set(info.keys))
    if unknown:
      raise ValueError(f"keys: expected a subset of {list(info.keys)} for {dataset!r}, got unknown {unknown}")

  source = sources.get_source(dataset, split, data_dir)   # clear error for unknown splits / missing files
  if keys is not None:
    keys = _with_companions(tuple(keys), info.keys)
    # A source that can skip reading the other keys (TfdsSource) does so; others are filtered.
    source = source.with_keys(keys) if hasattr(source, "with_keys") else _KeySelect(source, keys)
  n = len(source)
  if n == 0:
    raise ValueError(f"dataset: {dataset!r} split {split!r} is empty")

  fn = _ExampleFn(source=source, train=train, seed=seed, size=size, augment=aug,
                  keypoint_flip_perm=info.keypoint_flip_perm, ignore_label=info.ignore_label,
                  dataset=dataset, split=split)
  if train:
    per_process = n // pc
    if per_process < batch:
      raise ValueError(f"global_batch_size: {gbs} needs {batch} examples per process, but split "
                       f"{split!r} of {dataset!r} has {n} examples for {pc} processes")
    ds = grain.MapDataset.range(per_process * pc)[pi::pc]
    ds = ds.shuffle(seed=seed).repeat(num_epochs)
    ds = ds.map_with_index(lambda pos, index: (pos // per_process, index))
  else:
    own = np.arange(pi, n, pc)
    per_process = -(-n // pc)                       # equal for every process: ceil(n / P) ...
    per_process = -(-per_process // batch) * batch  # ... rounded up to whole batches
    padded = np.full((per_process,), -1, np.int64)
    padded[:len(own)] = own
    template = fn((0, int(own[0])) if len(own) else (0, 0))
    fn = dataclasses.replace(fn, template={
        k: np.full_like(v, _fill_value(k, info.ignore_label)) for k, v in template.items()
        if k != "batch_mask"})
    ds = grain.MapDataset.source(padded.tolist()).repeat(num_epochs)
    ds = ds.map_with_index(lambda pos, index: (pos // per_process, index))
  ds = ds.map(fn)
  num_threads = _check_int(num_threads, "num_threads", 0)
  prefetch = max(8, 2 * batch) if prefetch is None else _check_int(prefetch, "prefetch", 0)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  ds = ds.batch(batch, drop_remainder=train)
  if _check_int(num_workers, "num_workers", 0):
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():   # grain's workers read absl flags; outside absl.app use defaults
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  meta = {"dataset": dataset, "split": split, "seed": seed, "train": bool(train),
          "global_batch_size": gbs, "process_index": pi, "process_count": pc,
          "image_size": list(size) if size is not None else None,
          "num_epochs": num_epochs, "keys": list(keys) if keys is not None else None,
          "augment": dataclasses.asdict(aug) if aug is not None else None}
  meta = json.loads(json.dumps(meta))
  return DataIterator(ds, meta)


def _with_companions(keys: tuple[str, ...], available: tuple[str, ...]) -> tuple[str, ...]:
  """`keys` plus what they need: instance arrays need `num_instances` and, without `masks`, `boxes`
  (augmentation drops instances with no mask pixel left, or an empty box when there are no masks);
  keypoints need their `classes` (the flip permutation is per class); instance arrays bring the
  dataset's `image_id` when it has one (the detection tasks' results files name the images by it).
  Companions the dataset lacks are left out."""
  extra = []
  if any(k in keys for k in ("masks", "boxes", "classes", "keypoints")):
    extra += ["num_instances"] + ([] if "masks" in keys else ["boxes"]) + ["image_id"]
  if "keypoints" in keys:
    extra.append("classes")
  return tuple(keys) + tuple(k for k in dict.fromkeys(extra) if k not in keys and k in available)


class _KeySelect:
  """A source view that keeps only `keys` of every example."""

  def __init__(self, source, keys: tuple[str, ...]):
    self._source, self._keys = source, keys

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    ex = self._source[index]
    return {k: ex[k] for k in self._keys}
