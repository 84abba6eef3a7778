"""Receptive fields: the theoretical one of a layer stack, and the effective (gradient) one.

Theoretical (Araujo et al., "Computing receptive fields of convolutional neural networks", 2019):
a layer with kernel k, stride s, dilation d spans `k_eff = d·(k - 1) + 1` of its input; with
`r_0 = 1`, `j_0 = 1` (one input pixel, unit spacing), after layer l

    r_l = r_{l-1} + (k_eff_l - 1) · j_{l-1}        receptive-field size, in input pixels
    j_l = j_{l-1} · s_l                            jump: input pixels between adjacent outputs
    c_l = c_{l-1} + ((k_eff_l - 1) / 2 - p_l) · j_{l-1}   centre of output pixel 0's field

(`c_0 = 0`; input pixel i has centre i, so output pixel i of layer l is centred at `c_l + i·j_l`).

Effective (Luo et al., "Understanding the effective receptive field in deep CNNs", 2016): how much
each input pixel moves one output pixel, `|∂ y[n, i, j, :].sum() / ∂ x|`, summed over input
channels (and the batch) and normalised to sum to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dense_jax.checks import check_rank


class ReceptiveField(NamedTuple):
  """Receptive field after one layer: `size` and `jump` in input pixels; `start` = centre of the
  field of output pixel 0 in input coordinates (depends on the layers' padding)."""
  size: int
  jump: int
  start: float


def _layer(layer, i: int) -> tuple[int, int, int, int]:
  """(kernel, stride, dilation[, padding]) of layer i, validated; padding defaults to 0."""
  if not isinstance(layer, Sequence) or len(layer) not in (3, 4):
    raise ValueError(f"layers[{i}]: expected (kernel, stride, dilation) or (kernel, stride, dilation, "
                     f"padding), got {layer!r}")
  if not all(isinstance(v, int) and not isinstance(v, bool) for v in layer):
    raise ValueError(f"layers[{i}]: expected ints, got {layer!r}")
  k, s, d = layer[:3]
  p = layer[3] if len(layer) == 4 else 0
  if min(k, s, d) < 1 or p < 0:
    raise ValueError(f"layers[{i}]: expected kernel, stride, dilation >= 1 and padding >= 0, got {layer!r}")
  return k, s, d, p


def receptive_field(layers: Sequence[Sequence[int]]) -> list[ReceptiveField]:
  """Receptive field size, jump and start after each layer of a stack (formulas in the module doc).

  Args:
    layers: a sequence of `(kernel, stride, dilation)` or `(kernel, stride, dilation, padding)`
      ints, input first; pooling layers count as `(window, stride, 1)`.

  Returns:
    one `ReceptiveField(size, jump, start)` per layer.
  """
  if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
    raise ValueError(f"layers: expected a sequence of (kernel, stride, dilation) tuples, got {layers!r}")
  size, jump, start = 1, 1, 0.0
  out = []
  for i, layer in enumerate(layers):
    k, s, d, p = _layer(layer, i)
    k_eff = d * (k - 1) + 1
    size += (k_eff - 1) * jump
    start += ((k_eff - 1) / 2 - p) * jump
    jump *= s
    out.append(ReceptiveField(size, jump, start))
  return out


def effective_receptive_field(apply_fn: Callable, x, output_position=None):
  """Gradient-based effective receptive field of one output pixel (Luo et al., 2016).

      erf[h, w] = Σ_n Σ_c |∂ (Σ_k y[n, i, j, k]) / ∂ x[n, h, w, c]|,  normalised to Σ erf = 1

  computed with one VJP whose cotangent is one-hot at output pixel (i, j) in every channel.

  Args:
    apply_fn: `x -> y`, NHWC to NHWC (e.g. `lambda x: model.apply(params, x)`).
    x: `(N, H, W, C)` input(s); Luo et al. average over many random inputs (a batch).
    output_position: `(i, j)` ints or int arrays (may be traced); default the centre
      `(Ho // 2, Wo // 2)`.

  Returns:
    `(H, W)` float32 map summing to one (all zeros if the gradient vanishes). Jit-safe.
  """
  check_rank(x, 4, "x", "NHWC")
  y, vjp = jax.vjp(apply_fn, x)
  check_rank(y, 4, "apply_fn(x)", "NHWC")
  _, ho, wo, _ = y.shape
  i, j = (ho // 2, wo // 2) if output_position is None else output_position
  if isinstance(i, int) and isinstance(j, int) and not (0 <= i < ho and 0 <= j < wo):
    raise ValueError(f"output_position: expected a pixel of the {(ho, wo)} output, got {(i, j)}")
  hit = (jnp.arange(ho)[:, None] == i) & (jnp.arange(wo)[None, :] == j)
  ct = jnp.broadcast_to(hit[None, :, :, None], y.shape).astype(y.dtype)
  (grad,) = vjp(ct)
  erf = jnp.abs(grad.astype(jnp.float32)).sum(axis=(0, 3))
  total = erf.sum()
  return jnp.where(total > 0, erf / jnp.where(total > 0, total, 1.0), 0.0)
