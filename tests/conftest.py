"""Test set-up: CPU only, 8 fake CPU devices so sharding tests see a real mesh.

The flags must be set before jax is imported anywhere, which is why they live here.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()


# The registry's torch is a CUDA build whose torchvision ops import triton; triton segfaults the process
# when TensorFlow is already loaded (`import tensorflow; import torchvision.ops` dies, the other order
# works). A test worker runs many files, some of which load TensorFlow (the data pipeline), so the
# parity references are imported first, where installed. Nothing in the package itself imports torch.
try:
  import torchvision.ops  # noqa: F401  pylint: disable=unused-import
except ImportError:
  pass
