"""Thin Flax (linen) modules that hold parameters and call dense_jax.ops."""
from dense_jax.nn.conv import BilinearUpsample, Conv, ConvTranspose
from dense_jax.nn.pooling import MaxPoolWithArgmax, MaxUnpool
from dense_jax.nn.unpool import Unpool
