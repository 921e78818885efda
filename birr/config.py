"""One dataclass holds every hyper-parameter of a run; presets expand a method name into it.

The defaults are the reference "BI-R + SI" command on class-incremental CIFAR-100 (appendix §1):
`main_cl.py --experiment=CIFAR100 --scenario=class --replay=generative --brain-inspired --si --c=1e8
--dg-prop=0.6`. Every field says where its value comes from. `preset()` is the one place where a method
name and a budget are resolved into a complete config: the config printed is the config
that ran. The stamp (a hash of the fields that change the numbers) names the run's results file. The
lists of runs behind the paper's table and figure (Table 1, Fig. 3, the sweeps) are in birr.experiments.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields

METHODS = ("bir+si", "bir", "finetune", "rr+ra")
BUDGETS = ("smoke", "class", "short", "full")
RR_VARIANTS = ("code", "paper")
IMPORTED_ENCODER = re.compile(r"ref-[0-9a-f]{10}")   # Config.encoder: "ref-" + 10 hex digits of the file's sha1


@dataclass(frozen=True)   # validated once, in __post_init__: a changed field would skip that and rename the run
class Config:
    method: str = "bir+si"            # label of the preset this came from (METHODS)
    # --- data, appendix §2 -------------------------------------------------------------------------
    dataset: str = "cifar100"         # birr.data.DATASETS
    n_tasks: int = 10                 # 10 tasks x 10 classes (appendix §1)
    seed: int = 0                     # class order, init, gate masks, replay noise (appendix §1: seed 0)
    n_train_per_class: int | None = None  # subsample the training set (short budgets only)
    # --- frozen encoder, appendix §3 ---------------------------------------------------------------
    encoder_data: str = "cifar10"     # pre-trained on CIFAR-10 (appendix §3 recipe)
    encoder_epochs: int = 100         # main_pretrain.py --epochs=100
    encoder: str | None = None        # an imported encoder, "ref-<10 hex>" (the reference's shipped
                                      # checkpoint, `python -m birr import-encoder`); None: pre-train
                                      # by the recipe above (birr.encoder.for_config)
    encoder_recipe: str = "supervised"  # what the pre-training learns from: "supervised" (appendix §3, the
                                      # labels) or "rotation" (which of 4 rotations an image shows: an
                                      # encoder that never saw a label, birr.encoder.pretrain)
    # --- model, appendix §4 ------------------------------------------------------------------------
    fc_units: int = 2000              # fcE / decoder width (appendix §4.1: 1024 -> 2000 -> 2000)
    z_dim: int = 100                  # latent size (options L134)
    dg_prop: float = 0.6              # P(gate entry = 0), --dg-prop=0.6 (appendix §4.2)
    # --- optimisation, appendix §5-§6 --------------------------------------------------------------
    iters: int = 5000                 # iterations per task (--iters)
    batch: int = 256                  # current-task batch (--batch)
    batch_replay: int = 256           # replay batch (= batch unless --batch-replay; the paper's Fig. 3: 512)
    lr: float = 1e-4                  # Adam(0.9, 0.999), one optimiser for the whole run
    replay: str = "generative"        # "generative" (BI-R) or "none" (plain fine-tuning)
    temp: float = 2.0                 # distillation and soft-gate temperature (--temp)
    si_c: float = 1e8                 # SI strength c (--c=1e8); 0 switches SI off
    si_eps: float = 0.1               # SI damping epsilon (--epsilon)
    si_params: str = "fcE+head"       # where SI's path integral is accumulated (appendix §6: fcE + head only) or "all"
    kl_divisor: float = 3072.0        # the reference divides the KL by 3*32*32 (appendix §5, §9.3)
    # --- reconstruction repulsion / attraction, appendix §8 ----------------------------------------
    rr: bool = False                  # --recon-repulsion
    ra: bool = False                  # --recon-attraction
    lambda_rr: float = 1e-6           # --lamda-recon-rep (default 1e-6 since 2021-09-08, appendix §8.1)
    lambda_ra: float = 1e-6           # --lamda-recon-atr
    rep_f: float | None = None        # f, the repulsion factor (--use-rep-f --rep-f); None = no factor
    rr_variant: str = "code"          # "code": the fork's implementation (appendix §8); "paper": the paper's §3.2-3.3
    # --- evaluation, appendix §7 -------------------------------------------------------------------
    eval_every: int = 0               # also evaluate every N iterations (0 = only after each task)
    log_every: int = 50               # record the loss terms every N iterations (a shorter task: its last)
    bf16: bool = False                # bf16 autocast of the matmuls (validated in benchmarks/)
    grad_every: int = 0               # every N iterations (and at each task's first), the norm of each loss
                                      # term's gradient on the decoder and on fcE (0 = never; a few extra
                                      # backward passes each time, the weights are untouched)
    # --- bookkeeping: not part of the stamp ----------------------------------------------------
    budget: str = "full"              # which preset budget produced this config (BUDGETS)
    device: str = "auto"              # "auto" = cuda if available else cpu
    compile: bool = False             # torch.compile the model's passes (on a CPU the loss terms too,
                                      # fast.compile_static) and fuse Adam + SI bookkeeping into one
                                      # kernel per parameter (fast.adam_si_update): same
                                      # arithmetic, equal to eager up to rounding (tests/test_fast.py)

    # fields that do not change the numbers a run produces (beyond floating-point rounding)
    NOT_STAMPED: typing.ClassVar[tuple[str, ...]] = ("budget", "device", "method", "compile")
    # fields added after results were stored: stamped only when not at their default, so every earlier
    # stamp still names its run (grad_every changes no number, but its results hold more: its own stamp)
    STAMPED_IF_SET: typing.ClassVar[tuple[str, ...]] = ("encoder", "encoder_recipe", "grad_every")

    def __post_init__(self):
        validate(self)

    @property
    def stamp(self) -> str:
        """12 hex digits of sha1 over the fields that change the numbers: the run's name everywhere."""
        d = {k: v for k, v in dataclasses.asdict(self).items()
             if k not in self.NOT_STAMPED and not (k in self.STAMPED_IF_SET and v == _DEFAULTS[k])}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Config":
        _check_keys(changes)
        return dataclasses.replace(self, **changes)


_DEFAULTS = {f.name: f.default for f in fields(Config)}
ENCODER_RECIPES = ("supervised", "rotation")


def _check_keys(d: dict):
    known = {f.name for f in fields(Config)}
    for k in d:
        if k not in known:
            raise ValueError(f"Unknown config key: {k!r} (allowed: {', '.join(sorted(known))})")


def _type_ok(value, annotation: str) -> bool:
    hint = typing.get_type_hints(Config)[annotation]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in options:
        if t is type(None) and value is None:
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t in (bool, str) and isinstance(value, t):
            return True
    return False


def validate(cfg: Config) -> None:
    """Fail early, in one line naming the bad value and what is allowed."""
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if not _type_ok(v, f.name):
            raise TypeError(f"config.{f.name}={v!r} has type {type(v).__name__}; expected {f.type}")
    from birr.data import DATASETS  # local import: data imports nothing from here
    checks = [
        (cfg.method in METHODS, "method", METHODS),
        (cfg.dataset in DATASETS, "dataset", DATASETS),
        (cfg.encoder_data in DATASETS, "encoder_data", DATASETS),
        (cfg.budget in BUDGETS, "budget", BUDGETS),
        (cfg.replay in ("generative", "none"), "replay", ("generative", "none")),
        (cfg.si_params in ("fcE+head", "all"), "si_params", ("fcE+head", "all")),
        (cfg.rr_variant in RR_VARIANTS, "rr_variant", RR_VARIANTS),
        (cfg.encoder_recipe in ENCODER_RECIPES, "encoder_recipe", ENCODER_RECIPES),
        (re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device) is not None, "device", ("auto", "cpu", "cuda[:N]")),
    ]
    for ok, name, allowed in checks:
        if not ok:
            raise ValueError(f"config.{name}={getattr(cfg, name)!r} is not allowed; choose one of {allowed}")
    positive = ["n_tasks", "iters", "batch", "batch_replay", "fc_units", "z_dim", "encoder_epochs", "log_every"]
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"config.{name}={getattr(cfg, name)} must be > 0")
    if cfg.encoder is not None and not IMPORTED_ENCODER.fullmatch(cfg.encoder):
        raise ValueError(f"config.encoder={cfg.encoder!r} must be None or an imported encoder's name, 'ref-' and 10 hex digits")
    for f in fields(cfg):   # nan passes every comparison below, and inf is no setting
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"config.{f.name}={v} must be a finite number")
    if not 0 <= cfg.seed < 2 ** 32:
        raise ValueError(f"config.seed={cfg.seed} must be in 0..{2 ** 32 - 1} (it seeds numpy and torch generators)")
    if cfg.n_train_per_class is not None and cfg.n_train_per_class < 1:
        raise ValueError(f"config.n_train_per_class={cfg.n_train_per_class} must be >= 1, or None for every image")
    if cfg.lambda_rr < 0 or cfg.lambda_ra < 0:
        raise ValueError(f"config.lambda_rr={cfg.lambda_rr} and lambda_ra={cfg.lambda_ra} must be >= 0 "
                         "(a negative weight would turn repulsion into attraction and back, appendix §8.5)")
    if not 0.0 <= cfg.dg_prop < 1.0:
        raise ValueError(f"config.dg_prop={cfg.dg_prop} must be in [0, 1)")
    if cfg.rep_f is not None and cfg.rep_f < 1:
        raise ValueError(f"config.rep_f={cfg.rep_f} must be >= 1 (paper §3.2: f >= 1) or None")
    if cfg.lr <= 0 or cfg.temp <= 0 or cfg.si_c < 0 or cfg.si_eps <= 0 or cfg.kl_divisor <= 0:
        raise ValueError("config.lr, temp, si_eps, kl_divisor must be > 0 and si_c >= 0; got "
                         f"lr={cfg.lr}, temp={cfg.temp}, si_eps={cfg.si_eps}, kl_divisor={cfg.kl_divisor}, si_c={cfg.si_c}")
    if (cfg.rr or cfg.ra) and cfg.replay == "none":
        raise ValueError("config.rr/ra need replay='generative': RR and RA act on replayed samples only (appendix §8.2)")
    if cfg.eval_every < 0:
        raise ValueError(f"config.eval_every={cfg.eval_every} must be >= 0")
    if cfg.grad_every < 0:
        raise ValueError(f"config.grad_every={cfg.grad_every} must be >= 0 (0 = no gradient norms)")
    if cfg.grad_every and cfg.compile:
        raise ValueError("config.grad_every needs compile=False: the per-term gradients are taken through the eager step")
    if cfg.encoder is not None and cfg.encoder_recipe != "supervised":
        raise ValueError(f"config.encoder_recipe={cfg.encoder_recipe!r} applies to pre-trained encoders; "
                         f"an imported encoder ({cfg.encoder}) comes with its own weights")


# --- presets ----------------------------------------------------------------------------------
# Per dataset: number of tasks and what the encoder is pre-trained on (appendix §2, §3).
DATASET_DEFAULTS = {
    "cifar100": dict(n_tasks=10, encoder_data="cifar10"),       # appendix §1-§3
    "cifar10": dict(n_tasks=5, encoder_data="cifar10"),         # proxy: 5 tasks x 2 classes
    "cifar10-jpg": dict(n_tasks=5, encoder_data="cifar10-jpg"),  # offline proxy (README.md, "Data")
    "synthetic": dict(n_tasks=2, encoder_data="synthetic"),     # tests and smoke runs only
}

# Budgets scale the run, never the method. `full` is the paper's setting; the others are stated on
# every page that uses them.
BUDGET_SETTINGS = {
    "smoke": dict(dataset="synthetic", iters=40, batch=32, batch_replay=32, fc_units=64, z_dim=16,
                  encoder_epochs=1, log_every=10, lr=1e-3),
    # short: 2-core CPU, the whole book in well under an hour. 17x fewer iterations than the paper,
    # so lr is 10x larger (at 1e-4 and 300 iterations new classes are never learned: measured, see the
    # errata chapter); the model is 10x narrower.
    "short": dict(dataset="cifar10-jpg", iters=300, batch=64, batch_replay=64, fc_units=200, lr=1e-3,
                  encoder_epochs=5, log_every=25),
    # class: the lab chapter (notebooks/13_lab.py) in a 90-minute class on a 2-core laptop CPU. The short
    # budget's data, iterations, lr and committed 5-epoch encoder (nothing to pre-train), with half its
    # batch and half its width. A BI-R + SI run and a fine-tuning run took 39 s together on this repo's
    # 2-core CPU, one thread, while other jobs shared it (short: 65 s); fine-tuning still ends at 0 % on
    # task 1 and BI-R + SI at 65 % (seed 0).
    "class": dict(dataset="cifar10-jpg", iters=300, batch=32, batch_replay=32, fc_units=100, lr=1e-3,
                  encoder_epochs=5, log_every=25),
    "full": dict(dataset="cifar100", iters=5000, batch=256, batch_replay=256, fc_units=2000,
                 encoder_epochs=100, log_every=50),
}

METHOD_SETTINGS = {
    "bir+si": dict(replay="generative", si_c=1e8, rr=False, ra=False),   # appendix §1: the "baseline"
    "bir": dict(replay="generative", si_c=0.0, rr=False, ra=False),      # BI-R without SI
    "finetune": dict(replay="none", si_c=0.0, rr=False, ra=False),       # lower bound: no replay, no SI
    # appendix §8.1: --recon-repulsion --recon-attraction --recon-rep-aver --use-rep-f --rep-f=20
    "rr+ra": dict(replay="generative", si_c=1e8, rr=True, ra=True, rep_f=20.0),
}


def preset(method: str = "bir+si", *, budget: str = "full", dataset: str | None = None, **overrides) -> Config:
    """A complete config: method switches, then the budget's sizes, then the dataset's task split,
    then explicit overrides (which always win)."""
    if method not in METHOD_SETTINGS:
        raise ValueError(f"method={method!r} is not a preset; choose one of {tuple(METHOD_SETTINGS)}")
    if budget not in BUDGET_SETTINGS:
        raise ValueError(f"budget={budget!r} is not allowed; choose one of {BUDGETS}")
    _check_keys(overrides)
    d: dict = dict(method=method, budget=budget)
    d.update(METHOD_SETTINGS[method])
    d.update(BUDGET_SETTINGS[budget])
    if dataset is not None:
        d["dataset"] = dataset
    if d["dataset"] not in DATASET_DEFAULTS:
        raise ValueError(f"dataset={d['dataset']!r} is not allowed; choose one of {tuple(DATASET_DEFAULTS)}")
    d.update(DATASET_DEFAULTS[d["dataset"]])
    d.update(overrides)
    return Config(**d)
