from dense_jax.ops.resize import bilinear_upsample_kernel, interpolation_matrix, resize_bilinear
