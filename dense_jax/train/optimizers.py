"""optax optimizers and learning-rate schedules from a config block.

    config.optimizer = dict(name='sgd' | 'adamw', learning_rate=..., schedule='poly' | 'cosine' |
                            'constant', warmup_steps=0, power=0.9, end_learning_rate=0.0,
                            momentum=0.9, nesterov=False, b1=0.9, b2=0.999, eps=1e-8,
                            weight_decay=0.0, grad_clip_norm=None)

Schedules (t = step, T = total_steps, w = warmup_steps, lr = learning_rate):
  warm-up     lr · t / w for t < w (linear from 0), then the schedule on the remaining T - w steps
  'poly'      (lr - end) · (1 - t/T)^power + end   — the "poly" policy of DeepLab / PSPNet / FCN
              follow-ups (power 0.9)
  'cosine'    end + (lr - end) · (1 + cos(π t / T)) / 2
  'constant'  lr

Weight decay applies to kernels only (parameters with ndim > 1): biases and norm scales/offsets are not
decayed (the usual mask). For 'sgd' it is the L2 term torch's `SGD(weight_decay=...)` adds to the
gradient (before momentum); for 'adamw' it is decoupled (Loshchilov & Hutter). `grad_clip_norm`
clips the global gradient norm before anything else.
"""

from __future__ import annotations

import jax
import optax

OPTIMIZER_KEYS = frozenset({
    "name", "learning_rate", "schedule", "warmup_steps", "power", "end_learning_rate", "momentum",
    "nesterov", "b1", "b2", "eps", "weight_decay", "grad_clip_norm"})
DEFAULTS = dict(schedule="constant", warmup_steps=0, power=0.9, end_learning_rate=0.0, momentum=0.9,
                nesterov=False, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip_norm=None)


def _get(cfg, key):
  return cfg[key] if key in cfg and cfg[key] is not None else DEFAULTS.get(key)


def check_optimizer_config(cfg) -> None:
  """Unknown keys / names / values → ValueError naming them (called before anything compiles)."""
  unknown = sorted(set(cfg.keys()) - OPTIMIZER_KEYS)
  if unknown:
    raise ValueError(f"config.optimizer: unknown keys {unknown}; expected a subset of {sorted(OPTIMIZER_KEYS)}")
  if cfg.get("name") not in ("sgd", "adamw"):
    raise ValueError(f"config.optimizer.name: expected 'sgd' or 'adamw', got {cfg.get('name')!r}")
  if _get(cfg, "schedule") not in ("poly", "cosine", "constant"):
    raise ValueError(f"config.optimizer.schedule: expected 'poly', 'cosine' or 'constant', got "
                     f"{cfg.get('schedule')!r}")
  lr = cfg.get("learning_rate")
  if not isinstance(lr, (int, float)) or lr <= 0:
    raise ValueError(f"config.optimizer.learning_rate: expected a number > 0, got {lr!r}")
  if _get(cfg, "warmup_steps") < 0:
    raise ValueError(f"config.optimizer.warmup_steps: expected >= 0, got {cfg.get('warmup_steps')!r}")


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step (see the module docstring)."""
  lr = float(cfg["learning_rate"])
  end = float(_get(cfg, "end_learning_rate"))
  warmup = int(_get(cfg, "warmup_steps"))
  decay_steps = max(1, total_steps - warmup)
  kind = _get(cfg, "schedule")
  if kind == "poly":
    main = optax.polynomial_schedule(lr, end, power=float(_get(cfg, "power")), transition_steps=decay_steps)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr)
  else:
    main = optax.constant_schedule(lr)
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def decay_mask(params):
  """True for the parameters weight decay applies to: kernels (ndim > 1), not biases or norm params."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`(tx, schedule)` for the config block `cfg` (see the module docstring)."""
  check_optimizer_config(cfg)
  schedule = make_schedule(cfg, total_steps)
  wd = float(_get(cfg, "weight_decay"))
  parts = []
  if _get(cfg, "grad_clip_norm") is not None:
    parts.append(optax.clip_by_global_norm(float(cfg["grad_clip_norm"])))
  if cfg["name"] == "sgd":
    if wd:
      parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    parts.append(optax.sgd(schedule, momentum=float(_get(cfg, "momentum")) or None,
                           nesterov=bool(_get(cfg, "nesterov"))))
  else:
    parts.append(optax.adamw(schedule, b1=float(_get(cfg, "b1")), b2=float(_get(cfg, "b2")),
                             eps=float(_get(cfg, "eps")), weight_decay=wd, mask=decay_mask))
  return optax.chain(*parts), schedule
