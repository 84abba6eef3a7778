"""Inspecting compiled programs: does a jitted function lower to a scatter?

Scatter is slow on TPUs and serialises on GPUs, so the ops promise scatter-free forward and
backward passes; tests and benchmarks check the promise with `has_scatter`.
"""

from __future__ import annotations

import re

# HLO instructions read `name = type opcode(operands), ..., metadata={op_name="..." ...}`; the
# metadata quotes Python function names, which may contain the word, so it is dropped first.
_METADATA = re.compile(r"metadata=\{[^}]*\}")
_HLO_SCATTER = re.compile(r"\bscatter\(")  # also matches select-and-scatter(
_STABLEHLO_SCATTER = re.compile(r"stablehlo\.(select_and_)?scatter\b")


def has_scatter(jitted, *args, **kwargs) -> bool:
  """Whether `jitted(*args, **kwargs)` has a scatter or select-and-scatter, before or after XLA's
  optimisations. `jitted` is a `jax.jit`-wrapped function."""
  lowered = jitted.lower(*args, **kwargs)
  stablehlo = _METADATA.sub("", lowered.as_text())
  compiled = _METADATA.sub("", lowered.compile().as_text())
  return bool(_STABLEHLO_SCATTER.search(stablehlo) or _HLO_SCATTER.search(compiled))
