"""Architectures, one file per family, each registered by name (see `registry`).

`get_model(name, **kwargs)` builds any registered model; `available_models()` lists them. Families
register themselves on import; the registry imports every module of this package on first lookup.
"""

from dense_jax.models.registry import available_models, get_model, register_model
