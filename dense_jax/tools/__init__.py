"""Command-line tools for researchers: `python -m dense_jax.tools.receptive_field` (per-layer receptive
field table and effective-receptive-field image of a config's model)."""
