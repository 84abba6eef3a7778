"""Datasets and input pipelines.

Importing this package registers every dataset in the source registry (`sources`): the procedural
`dense_shapes/<config>` (also registered as the TFDS builder `dense_shapes`) and the real datasets of
`dense_jax.data.real`. Entry points:

  create_iterator(name, split, global_batch_size=..., seed=..., train=...)   # pipeline.py
  dataset_info(name)      # classes, keys, splits (sources.DatasetInfo)
  get_source(name, split) # random access to raw examples
  available()             # registered names

The dataset stack needs tensorflow_datasets and grain. Where they are not installed (an accelerator host
that only benchmarks models, say) the pure submodules (`color`, `augment`, `panoptic_format`, ...)
still import, so models and tasks that use them do; the entry points above then raise an ImportError
that says what is missing.
"""

try:
  from dense_jax.data import (
    dense_shapes,  # registers dense_shapes/*
    partial_labels,  # registers <name>+one_label (multi-task partial labels)
  )
  from dense_jax.data.pipeline import DataFileError, DataIterator, create_iterator
  from dense_jax.data.sources import DatasetInfo, available, dataset_info, get_source, register_source
  partial_labels.register_all()
except ModuleNotFoundError as _error:   # pylint: disable=invalid-name
  if _error.name not in ("tensorflow_datasets", "tensorflow", "grain", "array_record"):
    raise
  _MISSING_STACK = _error

  def __getattr__(name):
    if name not in __all__:   # a submodule: `from dense_jax.data import color` imports it next
      raise AttributeError(name)
    raise ImportError(f"dense_jax.data.{name} needs the dataset stack, which is not installed here "
                      f"({_MISSING_STACK}); install it with `pip install -r requirements.txt`")

__all__ = ["DataFileError", "DataIterator", "DatasetInfo", "available", "create_iterator", "dataset_info",
           "get_source", "register_source"]
