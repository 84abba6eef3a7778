"""dense_jax: dense prediction in JAX/Flax.

Subpackages: `ops` (pure functions), `nn` (Flax modules over ops), `models`, `data`, `losses`,
`metrics`, `train`, `convert`. Activations are NHWC, conv kernels HWIO `(kh, kw, in, out)`.
"""

__version__ = "0.1.0"
