"""Real datasets, registered by name as data sources (see `dense_jax.data.sources`).

Each loader module registers its datasets at its end (`register_source(INFO, make_source)`); the source
registry imports every public module of this package on its first lookup, so a new loader needs no
entry anywhere else. The datasets:

  name                 module             keys                                           splits
  voc2012              voc                image, semantic (21)                           train, validation
  voc2012_sbd          voc                image, semantic (21), train = SBD train_aug    train, validation
  cityscapes           cityscapes         image, semantic (19 train ids)                 train, validation
  coco2017             coco               image, semantic (134), instances, keypoints,   train, validation
                                          panoptic
  coco2017_instances   coco               the same without panoptic; semantic (81)       train, validation
  coco2017_panoptic    coco_panoptic      image, semantic (134), panoptic (no instance   train, validation
                                          or keypoint files needed)
  cityscapes_panoptic  cityscapes_panoptic image, semantic (19 train ids), panoptic       train, validation
  nyu_depth_v2         nyu_depth_v2       image, depth (m), semantic (40)                train, test
  ade20k               ade20k             image, semantic (150)                          train, validation
  oxford_iiit_pet      oxford_iiit_pet    image, semantic (background, pet)              train, test

Nothing is downloaded. Each dataset reads the official files from a manual directory: the `data_dir`
argument, else `$DENSE_JAX_DATA_DIR/<name>`, else `~/dense_jax_data/<name>` (voc2012_sbd shares
voc2012's, coco2017_instances and coco2017_panoptic coco2017's, cityscapes_panoptic cityscapes'). Each
module's docstring says where to get the files and the layout it expects; a missing file raises
`MissingDataError` (a FileNotFoundError) naming the path and what to put there. A file that cannot be
decoded (truncated, damaged) raises `UnreadableFileError`, one that holds labels that cannot be right
(another size than its image, ids outside the dataset's label set, malformed polygons or RLE)
`BadLabelError` (both ValueErrors), naming the dataset, split, file and example, what was expected and
found, and what to do; each module's docstring says, per kind of label, what it refuses and where it
does what the dataset's official tools do. The input pipeline turns both into `DataFileError`.
Ignored pixels are 255 everywhere.
"""

from dense_jax.data.real._common import BadLabelError, MissingDataError, UnreadableFileError
