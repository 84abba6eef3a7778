from dense_jax.ops.resize import bilinear_upsample_kernel, interpolation_matrix, resize_bilinear
from dense_jax.ops.pooling import max_pool_with_argmax, max_unpool, unpooled_size
from dense_jax.ops.receptive_field import ReceptiveField, effective_receptive_field, receptive_field
from dense_jax.ops.unpool import unpool_bed_of_nails, unpool_nearest
from dense_jax.ops.conv import conv2d, conv_transpose2d
