"""Evaluation: the one loop over a split, and the evaluation of a trained run.

  loop.py       make_eval_step, run, results, figure_rows, summary: tasks' accumulators over batches
                (the trainer, `workdir.evaluate`, `experiments/evaluate_breakdown.py`); re-exported here
  settings.py   EvalSettings: the options of an evaluation of a trained run, one definition of defaults
  workdir.py    evaluate(config, workdir, settings, **options): restore a run, evaluate it, write results
  tables.py     the text tables `python -m dense_jax.evaluate` prints

`python -m dense_jax.evaluate` (`dense_jax/evaluate.py`) is the command line over `workdir.evaluate`.
"""

from dense_jax.evaluation.loop import figure_rows, make_eval_step, results, run, summary

__all__ = ["figure_rows", "make_eval_step", "results", "run", "summary"]
