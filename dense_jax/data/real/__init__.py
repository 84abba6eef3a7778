"""Real datasets, registered by name as data sources (see `dense_jax.data.sources`)."""

from dense_jax.data.real import ade20k, cityscapes, coco, nyu_depth_v2, oxford_iiit_pet, voc
from dense_jax.data.sources import register_source

register_source(voc.INFO, voc.make_source)
register_source(voc.SBD_INFO, voc.make_sbd_source)
register_source(cityscapes.INFO, cityscapes.make_source)
register_source(ade20k.INFO, ade20k.make_source)
register_source(oxford_iiit_pet.INFO, oxford_iiit_pet.make_source)
register_source(nyu_depth_v2.INFO, nyu_depth_v2.make_source)
register_source(coco.INFO, coco.make_source)
register_source(coco.INSTANCES_INFO, coco.make_instances_source)
