"""Argument validation shared by the ops: every error names the argument, what was expected, what came."""

from __future__ import annotations

from typing import Sequence


def check_rank(x, rank: int, name: str, layout: str = "") -> None:
  """Raise ValueError unless `x` has `rank` dimensions (`layout` e.g. 'NHWC' is quoted in the error)."""
  ndim = getattr(x, "ndim", None)
  if ndim != rank:
    what = f" ({layout})" if layout else ""
    raise ValueError(f"{name}: expected a rank-{rank} array{what}, got shape {getattr(x, 'shape', type(x))}")


def as_pair(value, name: str, *, minimum: int = 1) -> tuple[int, int]:
  """An int or a pair of ints -> (h, w), each an int >= `minimum`."""
  if isinstance(value, (int,)) and not isinstance(value, bool):
    pair = (value, value)
  elif isinstance(value, Sequence) and len(value) == 2 and all(
      isinstance(v, int) and not isinstance(v, bool) for v in value):
    pair = (int(value[0]), int(value[1]))
  else:
    raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
  if min(pair) < minimum:
    raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
  return pair


def check_channels(actual: int, expected: int, name: str) -> None:
  if actual != expected:
    raise ValueError(f"{name}: expected {expected} channels, got {actual}")
