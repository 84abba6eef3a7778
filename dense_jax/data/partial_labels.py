"""Partial labels for multi-task training (UberNet's setting): each training example keeps ONE label type.

For a dataset `base` with several label types, `<base>+one_label` is registered as another dataset:
the same examples plus per-example presence flags `has_<type>` (float32 scalars, 1 = the example carries
that label), one flag per label type of `base`:

  semantic -> has_semantic   depth -> has_depth   normals -> has_normals   colour (the image) -> has_colour

In the training split exactly one flag per example is 1, the type drawn uniformly with
`np.random.default_rng([SEED, index])` — fixed per example (not per epoch), as in a collection of
datasets that each label some tasks. Other splits carry every label (flags all 1), so evaluation is on
full labels. The labels themselves stay in the batch (static shapes); the tasks mask them out per
example (`dense_jax.tasks._labels.has_label`), and each task's loss is normalised by the examples (and
their pixels) that have its label. The evaluation padding's flags are 0, like its `batch_mask`.

Use it by naming the dataset: `config.dataset.name = 'dense_shapes/small_64+one_label'`
(`experiments/multitask_dense_shapes.py:partial` does). Variants are registered for every dataset with
depth or normals (`register_all`, on `import dense_jax.data`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dense_jax.data import sources

SUFFIX = "+one_label"
SEED = 0
PARTIAL_SPLIT = "train"
# label type -> the dataset key that holds it ('colour' is the image itself: colorization's label)
LABEL_KEYS = {"semantic": "semantic", "depth": "depth", "normals": "normals", "colour": "image"}


def flag_key(label_type: str) -> str:
  return f"has_{label_type}"


def label_types(info: sources.DatasetInfo) -> tuple[str, ...]:
  """The label types (`LABEL_KEYS`) the dataset `info` has."""
  return tuple(t for t, key in LABEL_KEYS.items() if key in info.keys)


def chosen_type(index: int, num_types: int, seed: int = SEED) -> int:
  """The label type (an index into `label_types`) training example `index` keeps."""
  return int(np.random.default_rng([seed, int(index)]).integers(num_types))


class OneLabelSource:
  """A source view adding `has_<type>` flags: one type per example when `partial`, else all."""

  def __init__(self, source, types: tuple[str, ...], partial: bool, flags: tuple[str, ...] | None = None,
               seed: int = SEED):
    self._source, self._types, self._partial, self._seed = source, types, partial, seed
    self._flags = tuple(flag_key(t) for t in types) if flags is None else flags

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    ex = dict(self._source[index])
    keep = chosen_type(index, len(self._types), self._seed) if self._partial else None
    for i, t in enumerate(self._types):
      if flag_key(t) in self._flags:
        ex[flag_key(t)] = np.float32(1.0 if keep is None or i == keep else 0.0)
    return ex

  def with_keys(self, keys):
    """A view reading only `keys` (flags included) of the underlying source."""
    base_keys = tuple(k for k in keys if not k.startswith("has_"))
    base = self._source.with_keys(base_keys) if hasattr(self._source, "with_keys") else _Select(self._source,
                                                                                                  base_keys)
    return OneLabelSource(base, self._types, self._partial, tuple(k for k in keys if k.startswith("has_")),
                          self._seed)


class _Select:
  def __init__(self, source, keys):
    self._source, self._keys = source, keys

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    ex = self._source[index]
    return {k: ex[k] for k in self._keys}


def register_one_label(base: str) -> str:
  """Registers `<base>+one_label` (see the module docstring) and returns its name."""
  info = sources.dataset_info(base)
  types = label_types(info)
  if len(types) < 2:
    raise ValueError(f"base: expected a dataset with at least two label types of {list(LABEL_KEYS)}, got "
                     f"{base!r} with {list(types)}")
  name = base + SUFFIX
  new_info = dataclasses.replace(
      info, name=name, keys=info.keys + tuple(flag_key(t) for t in types),
      description=(f"{base} where each {PARTIAL_SPLIT!r} example keeps one label type of {list(types)} "
                   f"(has_<type> flags; dense_jax.data.partial_labels). " + info.description))

  def factory(split, data_dir=None):
    return OneLabelSource(sources.get_source(base, split, data_dir), types, partial=split == PARTIAL_SPLIT)

  sources.register_source(new_info, factory)
  return name


def register_all() -> list[str]:
  """Registers the `+one_label` variant of every registered dataset with depth or normals."""
  return [register_one_label(name) for name in sources.available()
          if not name.endswith(SUFFIX) and {"depth", "normals"} & set(sources.dataset_info(name).keys)]
