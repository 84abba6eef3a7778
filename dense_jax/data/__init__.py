"""Datasets and input pipelines.

Importing this package registers every dataset in the source registry (`sources`): the procedural
`dense_shapes/<config>` (also registered as the TFDS builder `dense_shapes`) and the real datasets of
`dense_jax.data.real`. Entry points:

  create_iterator(name, split, global_batch_size=..., seed=..., train=...)   # pipeline.py
  dataset_info(name)      # classes, keys, splits (sources.DatasetInfo)
  get_source(name, split) # random access to raw examples
  available()             # registered names
"""

from dense_jax.data import dense_shapes  # registers dense_shapes/*
from dense_jax.data import real  # registers the real datasets
from dense_jax.data import partial_labels  # registers <name>+one_label (multi-task partial labels)
from dense_jax.data.pipeline import DataFileError, DataIterator, create_iterator
from dense_jax.data.sources import DatasetInfo, available, dataset_info, get_source, register_source

partial_labels.register_all()

__all__ = ["DataFileError", "DataIterator", "DatasetInfo", "available", "create_iterator", "dataset_info",
           "get_source", "register_source"]
