"""The training engine: state, optimizers, sharding, checkpoints, the loop, multi-host set-up.

    from dense_jax.train import train_and_evaluate
    metrics = train_and_evaluate(config, workdir)

Command line: `python -m dense_jax.train --config experiments/<name>.py[:args] --workdir DIR`.
"""

from dense_jax.train.loop import NonFiniteLossError, train_and_evaluate
from dense_jax.train.state import TrainState
