"""The training engine: state, optimizers, sharding, checkpoints, the loop, multi-host set-up.

    from dense_jax.train import train_and_evaluate
    metrics = train_and_evaluate(config, workdir)

Command line: `python -m dense_jax.train --config experiments/<name>.py[:args] --workdir DIR`.

The names below are loaded on first use, so that importing a light submodule (`dense_jax.train.step`,
`.state`, `.sharding`) does not pull in the loop's input pipeline and checkpointer packages.
"""

_LAZY = {"NonFiniteLossError": "dense_jax.train.loop", "train_and_evaluate": "dense_jax.train.loop",
         "TrainState": "dense_jax.train.state"}


def __getattr__(name):
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'dense_jax.train' has no attribute {name!r}")


__all__ = sorted(_LAZY)
