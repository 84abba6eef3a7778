"""`EvalSettings`: how a trained run is evaluated (`dense_jax.evaluation.workdir`, `python -m dense_jax.evaluate`).

The one definition of every evaluation option and its default; the command line's flags and the keyword
arguments of `dense_jax.evaluate.evaluate` map one to one onto its fields. Built settings are checked:
a bad mode, base or size raises ValueError naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

MODES = ("whole", "sliding", "multiscale")
DEFAULT_SCALES = (0.75, 1.0, 1.25)


def _pair_or_none(value, name: str):
  """None, or `value` (an int or an (h, w) pair, a list allowed) as an (h, w) tuple of ints >= 1."""
  from dense_jax.checks import as_pair  # pylint: disable=g-import-not-at-top
  return None if value is None else as_pair(tuple(value) if isinstance(value, list) else value, name)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """Options of one evaluation of a trained run; None takes the value from the run's config.

  mode: 'whole' (one call per image) | 'sliding' (tiles of the training crop) | 'multiscale' (scales ×
    horizontal flip, each scale predicted by `multiscale_base`).
  split: default `config.dataset.eval_split`. step: a saved step; default the newest readable one.
  image_size: int or (H, W) the examples are brought to; default the training size.
  batch_size: examples per call; default `config.eval_batch_size`. max_batches: default the whole split.
  tile, stride, overlap, window, margin, tile_batch: 'sliding' options (`inference.predict_sliding`);
    tile defaults to the training size.
  scales, flip, multiscale_base: 'multiscale' options; base 'whole' or 'sliding' (`inference.MODES`).
  pad_to_multiple: None = the smallest power of two the model takes (`inference.required_multiple`).
  write: write the result files into the workdir. verbose: print the table.
  num_figures: draw the first n examples of the first batch (image | each task's truth and prediction).
  """
  mode: str = "whole"
  split: str | None = None
  step: int | None = None
  image_size: int | tuple[int, int] | None = None
  batch_size: int | None = None
  max_batches: int | None = None
  tile: int | tuple[int, int] | None = None
  stride: int | tuple[int, int] | None = None
  overlap: float | None = None
  window: str = "hann"
  margin: int = 0
  tile_batch: int | None = None
  scales: Sequence[float] = DEFAULT_SCALES
  flip: bool = True
  multiscale_base: str = "whole"
  pad_to_multiple: int | None = None
  write: bool = True
  verbose: bool = True
  num_figures: int = 0

  def __post_init__(self):
    # pylint: disable=g-import-not-at-top
    from dense_jax import inference
    from dense_jax.checks import check_choice
    check_choice(self.mode, MODES, "mode")
    check_choice(self.multiscale_base, inference.MODES, "multiscale_base")
    b = self.batch_size
    if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
      raise ValueError(f"batch_size: expected an int >= 1, got {b!r}")
    set_ = lambda name, value: object.__setattr__(self, name, value)   # frozen: normalised once, here
    set_("image_size", _pair_or_none(self.image_size, "image_size"))
    set_("tile", _pair_or_none(self.tile, "tile"))
    if isinstance(self.stride, list):
      set_("stride", tuple(self.stride))
    set_("scales", tuple(float(s) for s in self.scales))

  @classmethod
  def from_kwargs(cls, settings: EvalSettings | None = None, **kwargs) -> EvalSettings:
    """`settings` (default all defaults) with the fields in `kwargs` replaced; an unknown name is a
    ValueError listing the fields."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
      raise ValueError(f"settings: unknown option(s) {unknown}; expected some of {sorted(fields)}")
    return dataclasses.replace(settings, **kwargs) if settings is not None else cls(**kwargs)

  @property
  def tiled(self) -> bool:
    """Whether images are predicted in tiles (mode 'sliding', or 'multiscale' on a 'sliding' base)."""
    return self.mode == "sliding" or (self.mode == "multiscale" and self.multiscale_base == "sliding")
