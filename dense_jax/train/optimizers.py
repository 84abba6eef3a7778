"""optax optimizers and learning-rate schedules from a config block.

    config.optimizer = dict(name='sgd' | 'adamw', learning_rate=..., schedule='poly' | 'cosine' |
                            'constant', warmup_steps=0, power=0.9, end_learning_rate=0.0,
                            momentum=0.9, nesterov=False, b1=0.9, b2=0.999, eps=1e-8,
                            weight_decay=0.0, grad_clip_norm=None, decay_norms_and_biases=False,
                            freeze=None, lr_multipliers=None)

Schedules (t = step, T = total_steps, w = warmup_steps, lr = learning_rate):
  warm-up     lr · t / w for t < w (linear from 0), then the schedule on the remaining T - w steps
  'poly'      (lr - end) · (1 - t/T)^power + end   — the "poly" policy of DeepLab / PSPNet / FCN
              follow-ups (power 0.9)
  'cosine'    end + (lr - end) · (1 + cos(π t / T)) / 2
  'constant'  lr

Weight decay applies to kernels only (parameters with ndim > 1): biases and norm scales/offsets are not
decayed (the usual mask; `decay_norms_and_biases=False`, the default). `decay_norms_and_biases=True`
decays every parameter (torch's default for a plain `SGD(model.parameters(), weight_decay=...)`). For
'sgd' it is the L2 term torch's `SGD(weight_decay=...)` adds to the gradient (before momentum); for
'adamw' it is decoupled (Loshchilov & Hutter). `grad_clip_norm` clips the global gradient norm before
anything else, over all parameters (frozen ones included), before the partitions below.

Fine-tuning partitions (optax's `multi_transform` over parameter labels; `set_to_zero` for the frozen):
  A parameter's path is its flax param-tree keys joined by '/', without a 'params/' prefix:
  `backbone/conv1/kernel`, `backbone/layer1_0/bn1/scale`, `classifier/conv/bias`. Patterns are Python
  regular expressions matched with `re.search` (anywhere in the path, as the sharding rules of
  dense_jax.train.sharding match): anchor them (`^backbone/`) to mean a prefix.
  freeze          a regex (default None): matching parameters get no update at all — no step, no
                  momentum, no weight decay (decoupled or L2); they stay bit-identical. Batch-norm
                  *statistics* are not parameters: freeze them with the model's `frozen_bn=True`.
                  torchvision's `trainable_backbone_layers=3` (the stem and layer1 frozen) is, for our
                  ResNet names (dense_jax.models.backbones.resnet: conv1, bn1, layer{1..4}_{i}):
                      freeze='^backbone/(body/)?(conv1|bn1|layer1_)'
                  ('body/' is the ResNet inside ResNetFPN, i.e. Mask R-CNN / Panoptic FPN); a whole
                  backbone: freeze='^backbone/'.
  lr_multipliers  (regex, factor) pairs, e.g. `(('^backbone/', 0.1),)` — the "backbone at 0.1×" recipe —
                  or a {regex: factor} dict (a ConfigDict refuses keys with dots, so prefer the pairs).
                  A matching parameter's learning rate is factor × the schedule at every step (its whole
                  update scales, the decoupled AdamW decay included, as torch's param groups do). The
                  first pattern that matches a path wins, in the order given; `freeze` wins over all.
                  Factors must be numbers > 0 (for 0, use `freeze`).
  Without `freeze` and `lr_multipliers` the optimizer (and its state's structure, so older checkpoints
  restore) is the plain chain, no partition. `check_param_patterns(cfg, params)` refuses a pattern that
  matches no parameter (the trainer calls it before compiling); `partition_summary` counts the groups.
"""

from __future__ import annotations

import math
import re

import jax
import optax

from dense_jax.train.sharding import path_string

OPTIMIZER_KEYS = frozenset({
    "name", "learning_rate", "schedule", "warmup_steps", "power", "end_learning_rate", "momentum",
    "nesterov", "b1", "b2", "eps", "weight_decay", "grad_clip_norm", "decay_norms_and_biases", "freeze",
    "lr_multipliers"})
DEFAULTS = dict(schedule="constant", warmup_steps=0, power=0.9, end_learning_rate=0.0, momentum=0.9,
                nesterov=False, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip_norm=None,
                decay_norms_and_biases=False, freeze=None, lr_multipliers=None)
FROZEN = "frozen"     # the partition labels: FROZEN, DEFAULT, and 'lr_multipliers[i]' for the i-th pattern
DEFAULT = "default"


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
  decay_all = _get(cfg, "decay_norms_and_biases")
  if not isinstance(decay_all, bool):
    raise ValueError(f"config.optimizer.decay_norms_and_biases: expected a bool, got {decay_all!r} "
                     f"({type(decay_all).__name__})")
  freeze = _get(cfg, "freeze")
  if freeze is not None:
    if not isinstance(freeze, str) or not freeze:
      raise ValueError(f"config.optimizer.freeze: expected None or a non-empty regular expression (str) over "
                       f"parameter paths such as 'backbone/conv1/kernel', got {freeze!r} ({type(freeze).__name__})")
    _compile(freeze, "config.optimizer.freeze")
  multiplier_rules(cfg)


def _compile(pattern: str, key: str) -> re.Pattern:
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ValueError(f"{key}: {pattern!r} is not a valid regular expression ({e})") from None


def multiplier_rules(cfg) -> list[tuple[str, float]]:
  """`config.optimizer.lr_multipliers` as a checked list of `(regex, factor)` pairs, in order (ValueError
  naming the key, what was expected and what came)."""
  value = _get(cfg, "lr_multipliers")
  key = "config.optimizer.lr_multipliers"
  if value is None:
    return []
  if hasattr(value, "items"):       # dict or ConfigDict
    pairs = list(value.items())
  elif isinstance(value, (list, tuple)):
    pairs = list(value)
  else:
    raise ValueError(f"{key}: expected (regex, factor) pairs or a {{regex: factor}} dict, got {value!r} "
                     f"({type(value).__name__})")
  rules = []
  for pair in pairs:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
      raise ValueError(f"{key}: expected (regex, factor) pairs, got the entry {pair!r}")
    pattern, factor = pair
    if not isinstance(pattern, str) or not pattern:
      raise ValueError(f"{key}: expected a non-empty regular expression (str) as the pattern, got {pattern!r} "
                       f"({type(pattern).__name__})")
    _compile(pattern, f"{key}[{pattern!r}]")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
      raise ValueError(f"{key}[{pattern!r}]: expected a number > 0 (to stop updates use "
                       f"config.optimizer.freeze), got {factor!r} ({type(factor).__name__})")
    rules.append((pattern, float(factor)))
  return rules


def uses_partitions(cfg) -> bool:
  """True when `freeze` or `lr_multipliers` is set (the optimizer is a `multi_transform`)."""
  return _get(cfg, "freeze") is not None or bool(multiplier_rules(cfg))


def label_of(cfg):
  """`path -> label` for the parameter path strings (see the module docstring): FROZEN when `freeze`
  matches, else 'lr_multipliers[i]' for the first pattern i that matches, else DEFAULT."""
  freeze = _get(cfg, "freeze")
  freeze = re.compile(freeze) if freeze is not None else None
  rules = [(re.compile(p), i) for i, (p, _) in enumerate(multiplier_rules(cfg))]

  def label(path: str) -> str:
    if freeze is not None and freeze.search(path):
      return FROZEN
    for pattern, i in rules:
      if pattern.search(path):
        return f"lr_multipliers[{i}]"
    return DEFAULT
  return label


def param_paths(params) -> list[str]:
  """The 'a/b/c' path of every leaf of `params` (arrays or ShapeDtypeStructs), in tree order."""
  return [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def param_labels(cfg):
  """The `param_labels` callable `optax.multi_transform` takes: params -> a tree of partition labels."""
  label = label_of(cfg)
  return lambda params: jax.tree_util.tree_map_with_path(lambda p, _: label(path_string(p)), params)


def check_param_patterns(cfg, params) -> None:
  """ValueError when `freeze` or an `lr_multipliers` pattern matches no path of `params` (a pytree of
  arrays or ShapeDtypeStructs, e.g. `jax.eval_shape(model.init, ...)['params']`), or when every path a
  multiplier pattern matches is already taken by `freeze` or an earlier pattern (so it would do nothing).
  The message names the key, the pattern and a few of the paths there are."""
  paths = param_paths(params)
  picks = sorted({round(i * (len(paths) - 1) / 7) for i in range(8)}) if paths else []   # spread out
  examples = ", ".join(repr(paths[i]) for i in picks)
  hint = (f"(paths are flax param keys joined by '/', matched with re.search; {len(paths)} paths, e.g. "
          f"{examples})")
  freeze = _get(cfg, "freeze")
  if freeze is not None and not any(re.search(freeze, p) for p in paths):
    raise ValueError(f"config.optimizer.freeze: the pattern {freeze!r} matches no parameter {hint}")
  label = label_of(cfg)
  labels = [label(p) for p in paths]
  for i, (pattern, _) in enumerate(multiplier_rules(cfg)):
    matched = [p for p in paths if re.search(pattern, p)]
    if not matched:
      raise ValueError(f"config.optimizer.lr_multipliers[{pattern!r}]: the pattern matches no parameter {hint}")
    if f"lr_multipliers[{i}]" not in labels:
      raise ValueError(f"config.optimizer.lr_multipliers[{pattern!r}]: every parameter the pattern matches "
                       f"(e.g. {matched[0]!r}) is already taken by config.optimizer.freeze or an earlier "
                       f"pattern (the first match wins), so it changes nothing")


def partition_summary(cfg, params) -> str:
  """One line for a log: how many arrays and parameters each partition holds (empty when none is set)."""
  if not uses_partitions(cfg):
    return ""
  label = label_of(cfg)
  factors = {f"lr_multipliers[{i}]": f for i, (_, f) in enumerate(multiplier_rules(cfg))}
  counts = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = label(path_string(path))
    arrays, size = counts.get(name, (0, 0))
    counts[name] = (arrays + 1, size + int(math.prod(leaf.shape)))
  parts = []
  for name in [FROZEN, *factors, DEFAULT]:
    if name in counts:
      what = "frozen" if name == FROZEN else f"lr ×{factors.get(name, 1.0):g}"
      parts.append(f"{what}: {counts[name][0]} arrays / {counts[name][1]:,} parameters")
  return "Optimizer partitions: " + "; ".join(parts)


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


def _scaled(schedule: optax.Schedule, factor: float) -> optax.Schedule:
  return schedule if factor == 1.0 else (lambda count: factor * schedule(count))


def _base_parts(cfg, schedule: optax.Schedule) -> list[optax.GradientTransformation]:
  """sgd (after its L2 decay) or adamw with learning rate `schedule` and the decay mask, as chain parts
  (kept flat in the plain chain, so the optimizer state of a run without partitions is as it was)."""
  wd = float(_get(cfg, "weight_decay"))
  mask = None if _get(cfg, "decay_norms_and_biases") else decay_mask
  if cfg["name"] == "sgd":
    sgd = optax.sgd(schedule, momentum=float(_get(cfg, "momentum")) or None,
                    nesterov=bool(_get(cfg, "nesterov")))
    return [optax.add_decayed_weights(wd, mask=mask), sgd] if wd else [sgd]
  return [optax.adamw(schedule, b1=float(_get(cfg, "b1")), b2=float(_get(cfg, "b2")),
                      eps=float(_get(cfg, "eps")), weight_decay=wd, mask=mask)]


def make_optimizer(cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`(tx, schedule)` for the config block `cfg` (see the module docstring). `schedule` is the base
  learning rate (what the trainer logs); a multiplier group's is factor × schedule."""
  check_optimizer_config(cfg)
  schedule = make_schedule(cfg, total_steps)
  parts = []
  if _get(cfg, "grad_clip_norm") is not None:
    parts.append(optax.clip_by_global_norm(float(cfg["grad_clip_norm"])))   # global, over every param
  if not uses_partitions(cfg):
    parts.extend(_base_parts(cfg, schedule))
  else:
    transforms = {FROZEN: optax.set_to_zero(), DEFAULT: optax.chain(*_base_parts(cfg, schedule))}
    for i, (_, factor) in enumerate(multiplier_rules(cfg)):
      transforms[f"lr_multipliers[{i}]"] = optax.chain(*_base_parts(cfg, _scaled(schedule, factor)))
    parts.append(optax.multi_transform(transforms, param_labels(cfg)))
  return optax.chain(*parts), schedule
