"""Continual training of BI-R (+SI, +RR/RA): the loop of appendix §6, evaluation of appendix §7, results and
resume.

`run(cfg)` trains one run or loads it by its stamp; `run_many(cfgs)` trains every missing run of a list,
stacking runs that share their shapes into one batched model (one process keeps the machine busy): seeds, RR/RA switches,
lambdas, f and SI strength may differ inside a stack, nothing else.

Hot path rules: the encoder features live on the device (appendix §3 "consequence"), batches are index
gathers, replay sampling, gating, the GMM likelihood and RR/RA are batched tensor ops, and nothing in
the training step reads a value back to the host (the reference makes ~512 `.item()` calls a step,
appendix §10). Loss traces and RR/RA statistics are accumulated on the device and read once per task.
Once the matmuls are lean, the per-parameter passes are what is left: Adam is fused (one pass over
the 12.9 M parameters instead of ~8), and the SI penalty's gradient is added in closed form over the
fcE and head parameters only, where omega is non-zero (appendix §6), instead of through autograd over
every parameter. On the 2-core CPU these two made the full-size step 1.24x faster (batch 256, 2 threads,
timed interleaved against benchmarks/speed.py's ReferencePatternStack, which keeps the old bookkeeping).
With Config.compile, Adam and the SI bookkeeping become one kernel per parameter (adam_si_update),
and on a CPU the loss terms are compiled too, one static graph per task (compile_static);
with Config.bf16, the frozen previous model is cast to bf16 once per task rather than in every step,
and with both, the trained model's linear layers keep bf16 copies that the fused update writes
(Stack.enable_bf16_copies), so no step casts weights or their gradients at all.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from birr import data as bdata
from birr import losses as L
from birr import metrics
from birr import rr as RR
from birr import store
from birr.config import Config
from birr import stacked
from birr.model import BIR
from birr.si import SynapticIntelligence
from birr.stacked import StackedLinear

# fields that may differ between the runs of one stack (per-run tensors in the step)
PER_RUN = ("seed", "rr", "ra", "lambda_rr", "lambda_ra", "rep_f", "si_c", "method")
TERMS = ("total", "recon", "kl", "ce", "recon_r", "kl_r", "distill_r", "rr", "ra", "si")
# Config.grad_every: the norm of each term's gradient (as weighted in the total loss, appendix §5) on two
# parameter groups. The decoder is where RR and RA act; fcE is what SI protects and the classifier reads.
GRAD_TERMS = ("reconstruction", "kl", "classification", "distillation", "si", "rr", "ra")
GRAD_GROUPS = {"decoder": ("fromZ.", "fcD1.", "fcD2."), "fcE": ("fcE1.", "fcE2.")}
# 2: forgetting and BWT from acc_matrix_seen (metrics.summarise); load_result upgrades format 1 files
RESULTS_FORMAT = 2


# --- small utilities ---------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if present, else cpu. On a GPU, matmuls run in TF32 (10-bit mantissa products,
    fp32 accumulation), which is what makes the H100's tensor cores usable for fp32 models. That is
    birr's default because it is several times faster on the matmuls; torch's own default is off (since 1.12), and the
    reference's environments (torch 1.1; the fork's torch 1.9 with CUDA 10.2, appendix §10) had no TF32.
    provenance() records the setting with every result. A GPU that is asked for but absent is a
    one-line ValueError here, before any data is loaded."""
    dev = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                       "cpu" if name == "auto" else name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but this torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dev


def atomic_write_json(path: Path, obj, *, embed_digest: bool = False) -> None:
    """JSON through birr.store's one atomic, durable writer (temp file, fsync, rename, fsync of the
    folder): readers never see half a file, and a write that fails is one OSError naming the file and
    leaves nothing behind. embed_digest: with a "sha256" of the content that load_result checks."""
    store.write_json(path, obj, embed_digest=embed_digest)


def atomic_torch_save(path: Path, obj) -> None:
    """The same for torch.save (checkpoints of a stack's state, trained models), with a sidecar
    `<file>.sha256` that is checked before the file is read again (birr.store)."""
    store.torch_save(path, obj)


# The code a checkpoint was written by: a hash of the source of the modules training runs (read when
# this module is imported, i.e. of the code that is running). A checkpoint of other code is not resumed:
# its state would continue under other arithmetic, and the result would be stored under a stamp that
# says nothing of the change. Only these modules: an edit to the book's report code keeps checkpoints.
TRAINING_SOURCES = ("config", "data", "encoder", "losses", "metrics", "model", "store", "train")


def code_version() -> str:
    """16 hex digits of sha256 over birr's TRAINING_SOURCES files."""
    h = hashlib.sha256()
    for name in TRAINING_SOURCES:
        p = Path(__file__).with_name(f"{name}.py")
        h.update(f"{name}\0".encode())
        h.update(p.read_bytes() if p.is_file() else b"(missing)")
    return h.hexdigest()[:16]


CODE_VERSION = code_version()
# 2: code_version and stamps recorded; format-1 checkpoints are not resumed. 3: one file per run
# (_train_stack's Resume) instead of one per stack
CKPT_FORMAT = 3


class DivergedError(ValueError):
    """Runs whose losses or weights stopped being finite: one line per run (stamp, seed, task, iteration,
    terms). `results` holds the runs of the same call that finished and were stored."""

    def __init__(self, lines: list[str], results: list[dict] | None = None):
        super().__init__("\n".join(lines))
        self.lines, self.results = list(lines), list(results or [])


def provenance(device: torch.device) -> dict:
    """Where and with what a result was made (brief: log git sha, device and package versions)."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip() or "unknown"
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "unknown", False
    stated = os.environ.get("BIRR_GIT_SHA")
    if stated:   # a copied tree whose .git is not the source's (a lent GPU's copy): the sender's word wins
        sha, dirty = stated, False
    if device.type == "cuda":
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    dev_name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    import numpy
    return dict(git_sha=sha, git_dirty=dirty, git_sha_stated=bool(stated), torch=torch.__version__, numpy=numpy.__version__,
                python=sys.version.split()[0], platform=platform.platform(), device=str(device),
                device_name=dev_name, cpu_isa=cpu_isa(), threads=torch.get_num_threads(),
                tf32=device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32,
                date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def cpu_isa() -> str:
    """The vector ISA torch's CPU kernels use, and the bf16 matrix hardware the CPU has, e.g.
    "AVX512 + avx512_bf16" or "AVX2": CPUs of one model name differ in it from machine to machine here,
    and bf16 autocast is 2x faster than fp32 with it, 10-20x slower without (benchmarks/speed.py)."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = set()
    extra = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return " + ".join([torch.backends.cpu.get_cpu_capability(), *extra])


def default_results_dir() -> Path:
    """$BIRR_RESULTS if set (a relative one from the cwd: `make`, build_book.sh make it absolute), else the repository's results/."""
    env = os.environ.get("BIRR_RESULTS")
    return Path(env).absolute() if env else Path(__file__).resolve().parents[1] / "results"


def results_path(results_dir, cfg: Config) -> Path:
    return Path(results_dir) / "runs" / f"{cfg.stamp}.json"


def stamp_of(config: dict) -> str:
    """The stamp of a stored config (Config.stamp's rule on a dict; fields added since it was stored
    take their defaults): which run a results file really holds, whatever its name says."""
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    d = {k: v for k, v in {**defaults, **config}.items()
         if k not in Config.NOT_STAMPED and not (k in Config.STAMPED_IF_SET and v == defaults.get(k))}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def load_result(results_dir, cfg: Config) -> dict | None:
    """The stored result of `cfg` (found by its stamp) in results_dir (None: default_results_dir()),
    in the current RESULTS_FORMAT, or None if it has not been trained there. Refused, in one ValueError
    line naming the file (re-train with force=True, or delete it): a file that is not a readable result,
    one whose content no longer matches the sha256 recorded in it (birr.store), and one that holds
    another run (its config's stamp, or its "stamp", is not cfg's: a file copied under another name).
    Results written before hashes existed have none and are read unchecked; the stamp check applies to all."""
    path = results_path(results_dir if results_dir is not None else default_results_dir(), cfg)
    if not path.exists():
        return None
    remedy = "re-train with force=True (--force) or delete it"
    try:
        res = json.loads(path.read_text())
        if not isinstance(res, dict):
            raise ValueError(f"a JSON {type(res).__name__}, not an object")
        res = store.check_json_digest(res, path, remedy)
        missing = [k for k in ("stamp", "config", "acc_matrix_seen", "per_class_acc") if k not in res]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        got = stamp_of(res["config"])
        if got != cfg.stamp or res["stamp"] != cfg.stamp:
            raise store.CorruptFile(path, f"{path} holds the result of run {got if got != cfg.stamp else res['stamp']}, "
                                          f"not {cfg.stamp}: it was saved under another run's name; {remedy}")
        return upgrade_result(res)
    except store.CorruptFile:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:   # json's errors are ValueErrors
        raise ValueError(f"{path} is not a readable birr result ({e}); re-train with force=True "
                         f"(--force) or delete it") from None


def upgrade_result(res: dict) -> dict:
    """A stored result in the current RESULTS_FORMAT. Format 1 computed forgetting and BWT from the
    all-class accuracy matrix; its derived metrics are recomputed from the stored matrices (nothing is
    re-trained: every number they need is in the file). The file itself is left as it is."""
    if res.get("format", 1) < 2:
        res = dict(res, format=2, metrics=metrics.summarise(res["acc_matrix_seen"], res["per_class_acc"]))
    return res


def model_path(results_dir, cfg: Config) -> Path:
    return Path(results_dir if results_dir is not None else default_results_dir()) / "models" / f"{cfg.stamp}.pt"


def load_model(cfg: Config, results_dir=None, device="cpu") -> BIR | None:
    """The final model of a finished run (a K=1 BIR), or None if its weights were not kept here
    (results/models/ is not committed: re-run with force=True to get it). Checked against its sidecar
    sha256 where it has one (birr.store); a corrupt or truncated file is one ValueError naming it."""
    path = model_path(results_dir, cfg)
    if not path.exists():
        return None
    state = store.torch_load(path, what="saved model", remedy="re-train with force=True (--force) or delete it",
                             map_location=device, weights_only=True)
    m = BIR([cfg.seed], n_classes=state["head.weight"].shape[-1], fc_units=cfg.fc_units, z_dim=cfg.z_dim,
            in_dim=state["fcD2.weight"].shape[-1], dg_prop=cfg.dg_prop)
    m.load_state_dict(state)
    return m.to(device).eval()


def _stack_key(cfg: Config) -> tuple:
    """What the runs of one stack share: everything but PER_RUN and the budget's name. device and
    compile are not stamped (a stored result serves either) but a stack runs one way, cfgs[0]'s, so
    runs that differ in them go to different stacks: each result's config says how it was trained."""
    return tuple((k, v) for k, v in dataclasses.asdict(cfg).items() if k not in PER_RUN + ("budget",))


# --- data on the device ------------------------------------------------------------------------

class TaskData:
    """Encoder features of every image on the device, plus each run's labels (its own class order).

    The features do not depend on the seed (only labels are permuted, appendix §2), so K runs with K seeds
    share one feature bank and differ only in their label vectors.
    """

    def __init__(self, cfg: Config, seeds: list[int], device: torch.device, progress: bool = False):
        from birr import encoder as benc
        kw = dict(n_tasks=cfg.n_tasks)
        if cfg.n_train_per_class is not None:
            kw["n_train_per_class"] = cfg.n_train_per_class
        self.benches = [bdata.load(cfg.dataset, seed=s, **kw) for s in seeds]
        b0 = self.benches[0]
        for b in self.benches[1:]:   # one feature bank for all runs: the images must be the same
            if not torch.equal(b.train.images, b0.train.images):
                raise ValueError(f"dataset {cfg.dataset!r} gives different images for seeds {seeds}: cannot stack")
        enc, self.encoder_meta = benc.for_config(cfg, device=str(device), progress=progress)
        self.inputs: dict = {}   # which encoder weights and which feature cache file (hashes), for the results
        train, test = benc.features(enc, b0, device=str(device), progress=progress, info=self.inputs)
        self.train_x, self.test_x = train.to(device), test.to(device)                  # (N,D), (N_test,D)
        self.train_y = torch.stack([b.train.labels for b in self.benches]).to(device)  # (K,N)
        self.test_y = torch.stack([b.test.labels for b in self.benches]).to(device)    # (K,N_test)
        self.n_classes, self.n_tasks, self.cpt = b0.n_classes, b0.n_tasks, b0.classes_per_task

    def task_indices(self, t: int) -> torch.Tensor:
        """(K, N_t) indices of task t's training images for each run, in file order."""
        lo, hi = (t - 1) * self.cpt, t * self.cpt
        rows = [((y >= lo) & (y < hi)).nonzero().squeeze(1) for y in self.train_y]
        n = {len(r) for r in rows}
        if len(n) != 1:
            raise ValueError(f"task {t} has different sizes across runs ({sorted(n)}): stack only equal splits")
        return torch.stack(rows)

    def class_means(self, t: int) -> torch.Tensor:
        """(K, cpt, D) mean encoder feature of each of task t's classes over its real training images
        (the paper's x-hat, its §3.3; used by rr_variant='paper')."""
        lo = (t - 1) * self.cpt
        out = []
        for y in self.train_y:
            out.append(torch.stack([self.train_x[y == c].mean(0) for c in range(lo, lo + self.cpt)]))
        return torch.stack(out)


@torch.no_grad()
def evaluate(model: BIR, data: TaskData, n_seen: int | None = None, chunk: int = 2500):
    """Accuracy of every run on every task and every class (appendix §7), argmax over ALL classes (the
    final evaluation of main_cl). With `n_seen`, also the per-task accuracy with the argmax restricted
    to the first n_seen classes (the reference's during-training `precision_dict`).
    Returns per_task (K,T), per_class (K,C) and per_task_seen (K,T) or None, on the host."""
    K, C = model.K, data.n_classes
    pred_all, pred_seen = [], []
    for i in range(0, data.test_x.shape[0], chunk):
        x = data.test_x[i:i + chunk]
        logits = model.classify(x.expand(K, *x.shape).contiguous())
        pred_all.append(logits.argmax(-1))
        pred_seen.append(logits[..., :n_seen or C].argmax(-1))

    def per_task_and_class(preds):
        correct = (torch.cat(preds, 1) == data.test_y).float()                # (K,N_test)
        hits = torch.zeros(K, C, device=correct.device).scatter_add_(1, data.test_y, correct)
        counts = torch.zeros(K, C, device=correct.device).scatter_add_(1, data.test_y, torch.ones_like(correct))
        per_task = hits.view(K, data.n_tasks, data.cpt).sum(-1) / counts.view(K, data.n_tasks, data.cpt).sum(-1)
        return per_task.cpu(), (hits / counts.clamp_min(1)).cpu()

    per_task, per_class = per_task_and_class(pred_all)
    per_task_seen = per_task_and_class(pred_seen)[0] if n_seen is not None else None
    return per_task, per_class, per_task_seen


# --- the fused parameter update (Config.compile) ---------------------------------------------------

def adam_si_update(si: tuple, rest: tuple, steps: list, *, lr: float, beta1: float, beta2: float, eps: float,
                   si_grad: bool, kernel=None) -> None:
    """Adam's step fused with SI's per-step bookkeeping, one pass per parameter.

    si = (params, grads, exp_avgs, exp_avg_sqs, lows, scales, anchors, Ws) of the fcE and head parameters,
    rest = (params, grads, exp_avgs, exp_avg_sqs, lows) of the others, steps = Adam's step counters.
    lows[i] is None, or parameter i's bf16 copy (Stack.enable_bf16_copies): then grads[i] is the bf16
    gradient of that copy, widened here (exactly), and the copy is rewritten from the new fp32 value.
    Per parameter, the eager path does:

        g += 2 c omega (p - p*)                      SI gradient in closed form (appendix §6), if si_grad
        m = beta1 m + (1 - beta1) g                  Adam (torch.optim.Adam, appendix §1: betas 0.9, 0.999)
        v = beta2 v + (1 - beta2) g^2
        p_new = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        W += -g (p_new - p)                          SI path integral (appendix §6 step 3.4)

    as ~5 passes over the parameters (fused Adam, then sub, addcmul, copy, sub, addcmul on the SI ones);
    under torch.compile the per-element work (adam_si_pass) becomes one kernel per parameter that reads
    p, g, m, v (and the SI scale, anchor and W) once and writes p, m, v (and W, and the bf16 copy) once.
    The state is torch.optim.Adam's own (same tensors, same names), so checkpoints move freely between
    compiled and eager runs. The numbers equal the eager path's up to rounding (tests/test_train.py).

    The step counters and Adam's bias corrections (scalars) are computed here, the per-element work in
    `kernel` (adam_si_pass, compiled under Config.compile): inside a compiled kernel, inductor would
    recompute beta^t in every vector iteration (two scalar pow per 16 elements), which made the update
    45 % slower than its memory traffic on the 2-core CPU (9.4 vs 6.4 ms for 12 M parameters).
    """
    torch._foreach_add_(steps, 1.0)
    step = steps[0]
    step_size = lr / (1 - torch.pow(beta1, step))
    bias2_sqrt = torch.sqrt(1 - torch.pow(beta2, step))
    (kernel or adam_si_pass)(si, rest, step_size, bias2_sqrt, beta1=beta1, beta2=beta2, eps=eps, si_grad=si_grad)


def adam_si_pass(si: tuple, rest: tuple, step_size: torch.Tensor, bias2_sqrt: torch.Tensor, *, beta1: float,
                 beta2: float, eps: float, si_grad: bool) -> None:
    """adam_si_update's per-element work, given step_size = lr / (1 - beta1^t) and sqrt(1 - beta2^t)."""
    def adam(p, g, m, v):
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        return p - step_size * m / (v.sqrt() / bias2_sqrt + eps)

    for p, g, m, v, low, scale, anchor, W in zip(*si):
        g = g.float()                 # a bf16 copy's gradient: widened exactly, as autocast's cast does
        if si_grad:
            g = g + scale * (p - anchor)
        new = adam(p, g, m, v)
        W.addcmul_(g, p - new)        # -g (p_new - p_old), as the eager path writes it
        p.copy_(new)
        if low is not None:
            low.copy_(new)            # round to nearest even: the cast autocast would make next step
    for p, g, m, v, low in zip(*rest):
        new = adam(p, g.float(), m, v)
        p.copy_(new)
        if low is not None:
            low.copy_(new)


def compile_static(fn, graphs: int = 256, **kw):
    """torch.compile(fn, dynamic=False, **kw), with room for `graphs` graphs of fn. Every
    compiled pass of a Stack goes through here (Config.compile).

    Why static shapes: a graph's kernels, hence its roundings, then depend only on the shapes of the
    call, not on what the process compiled before. With dynamo's default, a second shape of the same
    function (task 2's 2B rows after task 1's B; the next task's slice over the classes seen so far;
    the next stack's sizes) switches it to one dynamic graph, which a run resumed in a fresh process
    never builds: resume would no longer be bit for bit (tests/test_train.py).

    Why the room: dynamo keeps 8 graphs per function, then silently runs it eagerly (slower, and not
    the resumed run's bits). A 10-task run's loss terms need 10 graphs (compiled on a CPU: one per task,
    as their slices follow the classes seen so far), the training pass 2, and a process that trains
    several stacks in turn adds that again per stack of new shapes; measured: with the default, the fifth of eight small stacks
    trained one after another no longer compiled its training pass (2026-11-30)."""
    compiled = torch.compile(fn, dynamic=False, **kw)
    cfg = torch._dynamo.config
    name = recompile_limit_name(cfg)
    limit = max(getattr(cfg, name), graphs)

    def static(*args, **kwargs):
        with cfg.patch(**{name: limit}):
            return compiled(*args, **kwargs)
    return static


def recompile_limit_name(dynamo_config) -> str:
    """The name of dynamo's per-function graph limit in this torch: `recompile_limit` from torch 2.7
    (pytorch#143709 renamed it, keeping the old name as an alias), `cache_size_limit` before. The package
    allows torch 2.4 (pyproject.toml), where reading the new name raised AttributeError as soon as a
    Stack with Config(compile=True) was built; the GPU image runs 2.11 and this machine 2.14, which have
    both."""
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            return name
    raise RuntimeError("torch._dynamo.config has neither recompile_limit nor cache_size_limit; "
                       "Config(compile=True) needs torch>=2.4 (pyproject.toml)")


# --- one stack of runs -------------------------------------------------------------------------

class Stack:
    """K runs that train together: model, previous model, optimiser, SI state, per-run settings."""

    def __init__(self, cfgs: list[Config], device: torch.device, data: TaskData | None = None, progress: bool = False):
        self.cfgs, self.cfg, self.device = cfgs, cfgs[0], device
        self.K = len(cfgs)
        self.data = data if data is not None else TaskData(self.cfg, [c.seed for c in cfgs], device, progress)
        c = self.cfg
        self.model = BIR([x.seed for x in cfgs], n_classes=self.data.n_classes, fc_units=c.fc_units,
                         z_dim=c.z_dim, in_dim=self.data.train_x.shape[1], dg_prop=c.dg_prop).to(device)
        self.prev: BIR | None = None
        # one Adam for the whole run, never reset between tasks (appendix §1, §6)
        # (fused: one pass over the 12.9 M parameters per step instead of ~8; same update rule)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(0.9, 0.999), fused=True)
        self.params = dict(self.model.named_parameters())
        vec = lambda name, fill=0.0: torch.tensor([float(getattr(x, name) if getattr(x, name) is not None else fill)
                                                   for x in cfgs], device=device)
        # SI (appendix §6): W accumulated for fcE and the head, as in the reference
        self.si = SynapticIntelligence(self.params, [n for n in self.params if c.si_params == "all"
                                                     or n.startswith(BIR.SI_FCE_HEAD)], vec("si_c"), c.si_eps)
        self.rest_names = [n for n in self.params if n not in set(self.si.names)]
        self.lambda_rr = vec("lambda_rr") * vec("rr")
        self.lambda_ra = vec("lambda_ra") * vec("ra")
        self.rep_f = vec("rep_f", 1.0)
        self.use_f = torch.tensor([x.rep_f is not None for x in cfgs], device=device)
        self.any_rr = any(x.rr or x.ra for x in cfgs)
        self.paper_means = torch.zeros(self.K, self.data.n_classes, self.model.D, device=device)
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if c.bf16 else nullcontext())
        # the model's training pass, optionally compiled (Config.compile; same graph, fused elementwise ops)
        self.low: dict[str, torch.Tensor] = {}
        self.forward = self.enable_bf16_copies() if c.bf16 and c.compile else self.model
        self.forward = compile_static(self.forward) if c.compile else self.forward
        # ... and Adam + SI bookkeeping as one fused kernel per parameter (see adam_si_update)
        self.update = adam_si_update if c.compile else None
        self.update_kernel = compile_static(adam_si_pass, fullgraph=True) if c.compile else None
        # ... and, on a CPU, the loss terms: there their ~60 small eager ops and ~40 backward ops each cost
        # their dispatch on the step's critical path (~3 ms of a ~130 ms step at batch 256 on the 2-core
        # CPU, benchmarks/speed.py); on a GPU they queue behind the matmuls, and a compile per task
        # (their slices change with the task) would only cost time
        self.losses = compile_static(self._losses) if c.compile and device.type == "cpu" else self._losses
        self.sample = self.classify_prev = None    # bound to the previous model in end_task

    # the per-task random streams derive from (seed, task): a resumed run draws exactly what an
    # uninterrupted one would
    def generators(self, t: int) -> list[torch.Generator]:
        return [torch.Generator(self.device).manual_seed(x.seed * 1_000_003 + t) for x in self.cfgs]

    def randn(self, gens, *shape):
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in gens])

    def randint(self, gens, high, *shape):
        return torch.stack([torch.randint(high, shape, generator=g, device=self.device) for g in gens])

    def enable_bf16_copies(self):
        """Give every linear layer's weight and bias a bf16 copy (`self.low`) and return the training pass
        that reads the copies instead of the fp32 parameters (Config.bf16 with Config.compile).

        Why: under autocast every step casts the 12.9 M fp32 weights of a run to bf16 for its matmuls,
        and casts their bf16 gradients back to fp32 for Adam: two extra passes over the parameters (on
        the 2-core CPU at batch 256 the compiled step's own kernels and zero_grad took 14 ms with them,
        3 ms without, profiled; on a GPU, 12 bytes per parameter, 4.6 GB of a 30-run step's 33 GB,
        benchmarks/roofline.py --bf16). Here the fused update (adam_si_update) writes the copy from the
        new fp32 value it has just computed, in the same pass, and reads the bf16 gradient directly.
        The numbers are autocast's, bit for bit: the copy is the round-to-nearest-even cast autocast
        would make, and the gradient autocast hands Adam is this bf16 gradient widened
        (tests/test_train.py). The fp32 parameters stay the master copy: Adam, SI, checkpoints, the
        previous model and evaluation read only them. Needs the fused update, so it comes with compile."""
        names = {f"{mod_name}.{p_name}" for mod_name, mod in self.model.named_modules()
                 if isinstance(mod, StackedLinear) for p_name, _ in mod.named_parameters(recurse=False)}
        self.low = {n: p.detach().to(torch.bfloat16).requires_grad_() for n, p in self.params.items() if n in names}
        model, low = self.model, self.low

        def train_pass(x, g, eps, y):
            return torch.func.functional_call(model, low, (x, g, eps, y), strict=False)
        return train_pass

    def _refresh_bf16_copies(self):
        """Rewrite the bf16 copies from the fp32 parameters (after a checkpoint is loaded), in place: a
        compiled training pass stays bound to the same tensors."""
        with torch.no_grad():
            for n, low in self.low.items():
                low.copy_(self.params[n])

    def begin_task(self, t: int):
        """Appendix §6 step 1: SI's path integral starts at zero; the paper variant's class means gain the
        new task's classes (the mean feature of their real training images)."""
        self.si.begin_task()
        if self.cfg.rr_variant == "paper":
            lo = (t - 1) * self.data.cpt
            self.paper_means[:, lo:lo + self.data.cpt] = self.data.class_means(t)

    def step(self, t: int, x, y, gens, log: torch.Tensor | None, rr_log: dict | None,
             grad_log: torch.Tensor | None = None):
        """One iteration (appendix §6 step 3): current batch, replay, total loss, backward, Adam, SI path
        integral. x (K,B,D), y (K,B). Writes the loss terms into `log` (K, len(TERMS)) if given, and the
        norms of the terms' gradients into `grad_log` (K, len(GRAD_TERMS), len(GRAD_GROUPS)) if given."""
        c, m, d = self.cfg, self.model, self.data
        K, C, n_old = self.K, d.n_classes, d.cpt * (t - 1)
        zeros = torch.zeros(K, device=self.device)
        B, replay = x.shape[1], self.prev is not None and c.replay == "generative"
        x_ = w = t_logits = None
        # current data: gated by its true label; its eps is drawn first, before any replay draw
        x_in, g, eps = x, None, self.randn(gens, B, m.Z)
        if replay:
            Br = c.batch_replay
            with torch.no_grad(), self.autocast:
                # replay: uniform over old classes from the frozen previous model (appendix §6 step 3.2);
                # the generation class is discarded, the teacher's logits define targets and gates
                x_ = self.sample(self.randint(gens, n_old, Br), self.randn(gens, Br, m.Z)).float()
                t_logits = self.classify_prev(x_)[..., :n_old].float()           # (K,Br,C_old)
                w = F.softmax(t_logits / c.temp, dim=-1)                         # soft gate, T = 2
            # one pass over the current and the replayed samples together: every weight is read once
            # and its gradient is one product, not two that autograd then adds (the same
            # numbers up to rounding, benchmarks/roofline.py)
            x_in = torch.cat([x, x_], 1)
            g = F.pad(w, (0, C - n_old))                      # soft gates of the replayed samples
            eps = torch.cat([eps, self.randn(gens, Br, m.Z)], 1)
        with self.autocast:
            out = self.forward(x_in, g, eps, y)             # current samples gated by their labels y
        terms = self.losses(t, out, x, y, x_, w, t_logits)
        total = terms["total"]
        if terms["stats"] is not None and rr_log is not None:
            self._log_rr(rr_log, terms["stats"])
        if grad_log is not None:
            grad_log.copy_(self.term_grad_norms(t, terms))
        # every parameter gets a gradient in every step, so dropping .grad (instead of zero-filling it and
        # adding the new one to it) changes no bit and saves two passes over all parameters
        # (benchmarks/roofline.py: ~6 GB a step for 30 stacked runs)
        self.opt.zero_grad(set_to_none=True)
        for low in self.low.values():
            low.grad = None
        total.sum().backward()       # runs are independent: d(sum)/d(run k's params) = d(loss_k)/d(...)
        si = self.si.penalty(self.params) if t > 1 and log is not None else zeros   # its value only when logged
        total = total.detach() + self.si.c * si
        if self.update is not None:
            self._fused_update(si_grad=t > 1)
        else:
            self._eager_update(si_grad=t > 1)
        if log is not None:
            # a run without RR/RA logs zeros, as it would alone, even when its stack computes them
            logged = dict(terms, total=total, si=si, rr=torch.where(self.lambda_rr > 0, terms["rr"], zeros),
                          ra=torch.where(self.lambda_ra > 0, terms["ra"], zeros))
            log.copy_(torch.stack([logged[name] for name in TERMS], 1).detach())

    def _losses(self, t: int, out, x, y, x_=None, w=None, t_logits=None) -> dict:
        """The loss terms of one step by name (losses.bir_loss) from the training pass's outputs over the
        current samples and, after them, the replayed ones: x_, w, t_logits are the replayed features, soft
        gates and teacher logits (None without replay). Under Config.compile on a CPU this runs compiled."""
        B, c = x.shape[1], self.cfg
        replay = None if x_ is None else (x_, t_logits, w, tuple(o[:, B:] for o in out))
        return L.bir_loss(t, x, y, tuple(o[:, :B] for o in out), self.model.z_class_means,
                          self.model.z_class_logvars, n_active=self.data.cpt * t, temp=c.temp,
                          kl_divisor=c.kl_divisor, replay=replay, rr_ra=self._rr_ra if self.any_rr else None,
                          lambda_rr=self.lambda_rr, lambda_ra=self.lambda_ra)

    def _rr_ra(self, x_r, x_recon_r, logits_r, teacher_logits):
        """RR and RA of the stack's variant (birr.rr), with the (label, competitor) pairs for the log."""
        if self.cfg.rr_variant == "code":
            rr, ra, st = RR.rr_ra_code(x_r, x_recon_r, teacher_logits, self.rep_f, self.use_f)
            st["pairs"] = (st["label"], st["competitor"], st["pair_mask"])
        else:
            rr, ra, st = RR.rr_ra_paper(x_recon_r, logits_r, self.paper_means[:, :logits_r.shape[-1]], self.rep_f,
                                        self.use_f, validate=False)                # Config checked f
            st["pairs"] = (st["label"], st["competitors"])                    # (K,B), (K,B,C_act)
        return rr, ra, st

    def term_grad_norms(self, t: int, terms) -> torch.Tensor:
        """(K, len(GRAD_TERMS), len(GRAD_GROUPS)): for each run, the L2 norm of each loss term's gradient,
        weighted as in the total loss (appendix §5: 1/t on the current terms, 1 - 1/t on the replayed ones,
        lambda (1 - 1/t) on RR and RA, c on L_SI), over the decoder's and over fcE's weights and biases.
        One extra backward pass per term through the step's graph (kept for the step's own backward,
        which follows unchanged); SI's gradient is its closed form 2 c omega (p - p*) (add_si_grad)."""
        T, rnt = terms, 1.0 / t
        weighted = dict(reconstruction=rnt * T["recon"] + (1 - rnt) * T["recon_r"],
                        kl=rnt * T["kl"] + (1 - rnt) * T["kl_r"], classification=rnt * T["ce"],
                        distillation=(1 - rnt) * T["distill_r"], si=None,
                        rr=(1 - rnt) * L.weighted(self.lambda_rr, T["rr"]),
                        ra=(1 - rnt) * L.weighted(self.lambda_ra, T["ra"]))
        names = [[n for n in self.params if n.startswith(prefixes)] for prefixes in GRAD_GROUPS.values()]
        flat = [n for group in names for n in group]
        out = torch.zeros(self.K, len(GRAD_TERMS), len(GRAD_GROUPS), device=self.device)
        for i, term in enumerate(GRAD_TERMS):
            if term == "si":
                if t == 1:
                    continue      # omega is zero until the first task ends
                with torch.no_grad():
                    grads = [self.si.scale[n] * (self.params[n] - self.si.anchor[n]) if n in self.si.scale else None
                             for n in flat]
            elif weighted[term].requires_grad:
                grads = torch.autograd.grad(weighted[term].sum(), [self.params[n] for n in flat],
                                            retain_graph=True, allow_unused=True)
            else:
                continue          # a constant zero (no replay in task 1, or no RR/RA in this stack)
            by_name = dict(zip(flat, grads))
            for j, group in enumerate(names):
                sq = [by_name[n].float().flatten(1).pow(2).sum(1) for n in group if by_name[n] is not None]
                if sq:
                    out[:, i, j] = torch.stack(sq).sum(0).sqrt()
        return out

    def _eager_update(self, si_grad: bool):
        """+ c L_SI's gradient in closed form, Adam, then SI's path integral (appendix §6 step 3.3-3.4)."""
        if self.low:
            raise RuntimeError("bf16 weight copies are written by the fused update only (Config.compile)")
        if si_grad:
            self.si.add_grad(self.params)
        self.si.remember(self.params)
        stacked.adam_step(self.opt, list(self.params.values()), self.K)
        self.si.accumulate(self.params)

    def _fused_update(self, si_grad: bool):
        """The same update as _eager_update, through the compiled adam_si_update."""
        group = self.opt.param_groups[0]
        beta1, beta2 = group["betas"]

        def lists(names):
            ps, lows = [self.params[n] for n in names], [self.low.get(n) for n in names]
            states = [stacked.adam_state(self.opt, p) for p in ps]
            grads = [p.grad if low is None else low.grad for p, low in zip(ps, lows)]
            return ps, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], lows

        si_names = self.si.names
        si = (*lists(si_names), [self.si.scale[n] for n in si_names] if si_grad else [None] * len(si_names),
              [self.si.anchor[n] for n in si_names], [self.si.W[n] for n in si_names])
        rest = lists(self.rest_names)
        steps = [self.opt.state[p]["step"] for p in self.params.values()]
        with torch.no_grad():
            self.update(si, rest, steps, lr=group["lr"], beta1=beta1, beta2=beta2,
                        eps=group["eps"], si_grad=si_grad, kernel=self.update_kernel)

    def new_rr_log(self, t: int) -> dict | None:
        """Task t's RR/RA counters (appendix §8 logging), all on the device: the pair counts (K, C, C) of
        (label, competitor) and the per-run counts of competitive, kept and gated samples."""
        if not self.any_rr or t == 1:
            return None
        K, C, dev = self.K, self.data.n_classes, self.device
        return dict(n_replayed=0, n_competitive=torch.zeros(K, dtype=torch.long, device=dev),
                    n_kept=torch.zeros(K, dtype=torch.long, device=dev),
                    n_applied=torch.zeros(K, dtype=torch.long, device=dev),
                    n_rr_applied=torch.zeros(K, dtype=torch.long, device=dev),
                    n_ra_applied=torch.zeros(K, dtype=torch.long, device=dev),
                    pairs=torch.zeros(K, C, C, dtype=torch.long, device=dev))

    def _log_rr(self, rr_log, st):
        """Add one step's counts. Dense scatter-adds weighted by the masks, never a boolean index or
        nonzero(): their output size depends on the data, so on a GPU each would stall the step."""
        rr_log["n_replayed"] += self.cfg.batch_replay
        rr_log["n_competitive"] += st["n_competitive"]
        rr_log["n_kept"] += st["n_kept"]
        rr_log["n_applied"] += st["applied"].long()
        rr_log["n_rr_applied"] += st["rr_applied"].long()       # iterations whose RR term is not zero
        rr_log["n_ra_applied"] += st["ra_applied"].long()       # ... whose RA term is not zero
        K, C = self.K, self.data.n_classes
        pairs = st["pairs"]
        if self.cfg.rr_variant == "code":
            label, comp, mask = pairs                                        # (K,B) each
            flat, weight = label * C + comp, mask.long()
        else:
            label, comp = pairs                                              # (K,B), (K,B,C_act)
            flat = (label[..., None] * C + torch.arange(comp.shape[-1], device=self.device)).flatten(1)
            weight = comp.flatten(1).long()
        rr_log["pairs"].view(K, C * C).scatter_add_(1, flat, weight)

    def end_task(self):
        """Appendix §6 steps 4-5: SI's importances and anchor, then the previous model <- a copy."""
        self.si.end_task(self.params)
        self._set_prev()

    def _set_prev(self):
        """The frozen previous model that generates replay: made once, then overwritten in place, so a
        compiled sampler stays bound to the same module."""
        if self.prev is None:
            self.prev = copy.deepcopy(self.model).eval()
            for p in self.prev.parameters():
                p.requires_grad_(False)
            if self.cfg.bf16:
                # its weights are fixed for a whole task: cast its linear layers to bf16 once here, the
                # very rounding autocast would otherwise repeat in every step (same bits)
                for mod in self.prev.modules():
                    if isinstance(mod, StackedLinear):
                        mod.to(torch.bfloat16)
            self.sample, self.classify_prev = self.prev.sample, self.prev.classify
            if self.cfg.compile:
                self.sample, self.classify_prev = compile_static(self.sample), compile_static(self.classify_prev)
        else:
            with torch.no_grad():
                for a, b in zip(self.prev.state_dict().values(), self.model.state_dict().values()):
                    a.copy_(b)      # (into a bf16 layer: the same round-to-nearest as autocast's cast)

    # --- checkpoint ----------------------------------------------------------------------------
    def state(self) -> dict:
        return dict(model=self.model.state_dict(), opt=self.opt.state_dict(), **self.si.state(),
                    paper_means=self.paper_means)

    def run_state(self, k: int) -> dict:
        """Run k's part of state(), a copy (birr.stacked.run_part)."""
        return stacked.run_part(self.state(), k, self.K)

    def load_state(self, s: dict):
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.si.load_state(s, self.device)
        self.paper_means = s["paper_means"].to(self.device)
        self._refresh_bf16_copies()
        self._set_prev()


def _checkpoint_path(results_dir, cfg: Config) -> Path:
    """Where a run's state after its last finished task is kept (Resume below)."""
    return Path(results_dir) / "ckpt" / f"run-{cfg.stamp}.pt"


def _note(msg: str) -> None:
    """A notice that must be seen whatever `progress` says (a checkpoint discarded, a run diverged)."""
    print(f"[birr] {msg}", file=sys.stderr, flush=True)


def _files(paths: list[Path]) -> str:
    """Checkpoint files in a notice: the path of one; the names of several, and their folder."""
    if len(paths) == 1:
        return f"checkpoint {paths[0]}"
    return f"checkpoints {', '.join(p.name for p in paths)} in {paths[0].parent}"


def _read_checkpoints(paths: list[Path], cfgs: list[Config], fresh: bool) -> list[dict | None]:
    """Each run's checkpoint to resume from, or None to train it from task 1. Discarded (deleted, with
    one notice line per reason) where resuming would be wrong: asked for a fresh start (force), written
    by other code (CODE_VERSION) or in another layout (CKPT_FORMAT), or holding another run. A file that
    does not match its sha256 or cannot be read is one ValueError naming it: it is not deleted unasked.
    Read to the host: the stack's state is assembled there (stacked.join_states) and then loaded onto the device."""
    present = [(p, c) for p, c in zip(paths, cfgs) if p.exists()]
    if fresh:
        if present:
            _note(f"force: discarding {_files([p for p, _ in present])}; training from task 1")
            for p, _ in present:
                store.remove(p)
        return [None] * len(cfgs)
    found, stale = {}, {}
    for path, c in present:
        try:
            ck = store.torch_load(path, what="checkpoint", map_location="cpu", weights_only=True)
        except store.CorruptFile as e:
            raise ValueError(f"checkpoint {path} cannot be resumed from ({e.reason}); train the run again from task 1 "
                             f"with force=True (--force), or delete it") from None
        if not isinstance(ck, dict) or "format" not in ck or "code_version" not in ck:
            why = "it was written before checkpoints recorded the code that wrote them"
        elif ck["code_version"] != CODE_VERSION:
            why = f"it was written by other code (version {ck['code_version']}, this is {CODE_VERSION})"
        elif ck["format"] != CKPT_FORMAT:
            why = f"it is of checkpoint format {ck['format']}, this code reads {CKPT_FORMAT}"
        elif ck.get("stamps") != [c.stamp]:
            why = "it holds another run"
        else:
            found[c.stamp] = ck
            continue
        stale.setdefault(why, []).append(path)
    for why, bad in stale.items():
        _note(f"{_files(bad)} {'is' if len(bad) == 1 else 'are'} not resumed: {why}; deleted, training from task 1")
        for p in bad:
            store.remove(p)
    return [found.get(c.stamp) for c in cfgs]


def _remove_stack_checkpoints(results_dir: Path) -> None:
    """Whole-stack checkpoints (`stack-*.pt`, CKPT_FORMAT 2 and before) cannot be resumed: their code is not
    this code, whose checkpoints are per run. Deleted, with one notice line, so they do not stay forever."""
    old = sorted((results_dir / "ckpt").glob("stack-*.pt"))
    if old:
        _note(f"removed {len(old)} whole-stack checkpoint(s) of an older format from {results_dir / 'ckpt'} "
              f"({', '.join(p.name for p in old)}): this code cannot resume them")
        for p in old:
            store.remove(p)


@contextmanager
def _signals_deferred():
    """Ctrl-C and SIGTERM wait until the block is done: a checkpoint is written and recorded as written
    before the interrupt lands, so the line that reports it says what is on disk. The signal is then
    handled as it would have been (its handler called, or, for the default action, raised again)."""
    sigs = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in sigs}
    got = []
    for s in sigs:
        if old[s] is not None and old[s] != signal.SIG_IGN:   # None: a handler set outside Python, left alone
            signal.signal(s, lambda n, frame: got.append(n))
    try:
        yield
    finally:
        for s in sigs:
            if old[s] is not None and old[s] != signal.SIG_IGN:
                signal.signal(s, old[s])
        if got:
            handler = old[got[0]]
            if callable(handler):
                handler(got[0], None)
            else:
                os.kill(os.getpid(), got[0])


def _divergence(c: Config, t: int, logs: torch.Tensor, every: int, weights_finite: bool) -> str | None:
    """One line if run `c`'s logged losses (n_logs, len(TERMS)) of task t, or its weights at the task's
    end, are not all finite; else None. Names the run, the task, the first logged iteration with a
    non-finite value and the terms that are (the total only when no single term is)."""
    bad = ~torch.isfinite(logs)
    if bad.any():
        j = int(bad.any(1).nonzero()[0, 0])
        names = [TERMS[i] for i in bad[j].nonzero()[:, 0].tolist() if TERMS[i] != "total"] or ["total"]
        values = "/".join(sorted({f"{float(logs[j, TERMS.index(n)])}" for n in names}))
        what = f"loss term{'s' if len(names) > 1 else ''} {', '.join(names)} {'are' if len(names) > 1 else 'is'} " \
               f"{values} at iteration {(j + 1) * every} (the first logged one that is not finite)"
    elif not weights_finite:
        what = f"its weights are not finite after iteration {c.iters} (the logged losses were)"
    else:
        return None
    return f"run {c.stamp} (seed {c.seed}, lr={c.lr:g}) diverged in task {t}: {what}"


def _setup_stack(cfgs, device, cks, paths, progress):
    """The stack (data, model, optimiser), with run k's state loaded from checkpoint cks[k] where given
    (all runs or none, at one task: _train_stack); the runs' records so far; the seconds it took."""
    cfg, K = cfgs[0], len(cfgs)
    t_setup = time.time()
    stack = Stack(cfgs, device, progress=progress)
    d = stack.data
    if d.n_tasks != cfg.n_tasks:
        raise ValueError(f"dataset {cfg.dataset!r} gave {d.n_tasks} tasks, config asks for {cfg.n_tasks}")
    if d.cpt < 2 and cfg.rr_variant == "code" and any(c.rr or c.ra for c in cfgs):
        # the fork's RR/RA pairs each replayed sample's top-2 old classes (appendix §8): task 2 must have two
        raise ValueError(f"rr/ra with rr_variant='code' needs >= 2 classes per task, got {d.cpt} "
                         f"(n_tasks={cfg.n_tasks} on {d.n_classes} classes); use fewer tasks or rr_variant='paper'")
    per_run = [dict(acc_matrix=[], acc_matrix_seen=[], per_class_acc_after_task=[], curves=[], loss_traces=[], rr_stats=[],
                    task_wall_s=[]) for _ in cfgs]
    if cks[0] is not None:
        try:
            stack.load_state(stacked.join_states([ck["stack"] for ck in cks]))
            per_run = [ck["per_run"][0] for ck in cks]
        except Exception as e:          # a state of other shapes; the message must name the files
            raise ValueError(f"{_files(paths)} cannot be resumed from ({type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or [''])[0][:160]}); train the run(s) again from task 1 "
                             f"with force=True (--force), or delete {'it' if K == 1 else 'them'}") from None
        if progress:
            print(f"[birr] resuming {K} run(s) after task {cks[0]['task']} from "
                  f"{paths[0] if K == 1 else paths[0].parent}")
    return stack, per_run, time.time() - t_setup


def _train_stack(cfgs: list[Config], results_dir: Path, progress: bool, checkpoint: bool = True,
                 fresh: bool = False) -> list[dict]:
    """Train one stack of runs from task 1, or from its runs' checkpoints (not with fresh=True, run_many's
    force), and store each run's result and model. After every task the logged losses and the weights
    are checked to be finite, from the host copies read once per task anyway (nothing is read in the
    step): a run that diverged stores nothing; the stack stops when all of its runs have, and
    DivergedError names them (with the results of the others). A KeyboardInterrupt (Ctrl-C, or the
    command line's SIGTERM) leaves the checkpoints of the last finished task and carries
    `birr_checkpoint` = (path, task) or None, for the command line's message: the run's file, or for
    several runs their folder.

    Resume. Each run's state after its last finished task is a file of its own, named by its stamp
    (_checkpoint_path): its slice of the parameters, Adam's moments and step counts, SI's anchor and
    omega, the paper variant's class means, and its records so far (Stack.run_state). Nothing else
    carries over between tasks: SI's path integral restarts at zero with each task, the previous model
    is the trained one, and every random stream derives from (seed, task) (Stack.generators). So a run
    resumes in any slot of any stack, beside any runs, as it ended. A stack's runs must share their
    task, and a run cannot be rewound to an earlier one (only its latest state is kept): runs whose
    files stand at different tasks (a stack re-run with other runs beside them, or one killed between
    its runs' writes) are split into one stack per task, each going on from where its runs are
    (_train_split). A run's numbers do not depend on its stack where stacking is exact (on a CPU,
    run_many), so each ends as it would have uninterrupted, bit for bit (tests/test_resume.py); the
    same runs in the same order are the same stack on any device. `stacked_with` and the wall times say
    how it was trained. A run's file is deleted once its result is stored."""
    paths = [_checkpoint_path(results_dir, c) for c in cfgs]
    cks = _read_checkpoints(paths, cfgs, fresh) if checkpoint or fresh else [None] * len(cfgs)
    tasks = [ck["task"] if ck is not None else 0 for ck in cks]
    if len(set(tasks)) > 1:
        cks = None            # each stack of the split reads its runs' files again, one stack's at a time
        return _train_split(cfgs, tasks, results_dir, progress, checkpoint)
    cfg = cfgs[0]
    device = resolve_device(cfg.device)
    K = len(cfgs)
    saved_task = tasks[0]     # the last task whose state is in `paths`
    try:
        stack, per_run, setup_s = _setup_stack(cfgs, device, cks, paths, progress)
        cks = None            # the states are in the stack now: the host copies can go
        _train_tasks(stack, cfgs, per_run, saved_task + 1, paths if checkpoint else None, progress)
    except KeyboardInterrupt as e:
        saved_task = getattr(e, "saved_task", saved_task)
        e.birr_checkpoint = ((paths[0] if K == 1 else paths[0].parent, saved_task)
                             if checkpoint and saved_task > 0 and all(p.exists() for p in paths) else None)
        raise
    except DivergedError:
        for p in paths:
            store.remove(p)      # every run of the stack diverged: nothing to resume
        raise
    d = stack.data

    prov = provenance(device)
    out = []
    for k, c in enumerate(cfgs):
        r = per_run[k]
        if "diverged" in r:
            continue
        final_pc = r["per_class_acc_after_task"][-1]
        res = dict(
            format=RESULTS_FORMAT, stamp=c.stamp, method=c.method, dataset=c.dataset, budget=c.budget,
            synthetic=c.dataset == "synthetic", seed=c.seed, config=c.to_dict(),
            class_order=d.benches[k].class_order, class_names=d.benches[k].class_names,
            n_tasks=d.n_tasks, classes_per_task=d.cpt,
            acc_matrix=r["acc_matrix"], acc_matrix_seen=r["acc_matrix_seen"], per_class_acc=final_pc, per_task_acc=r["acc_matrix"][-1],
            metrics=metrics.summarise(r["acc_matrix_seen"], final_pc),
            per_class_acc_after_task=r["per_class_acc_after_task"], curves=r["curves"],
            loss_traces=r["loss_traces"], rr_stats=r["rr_stats"], **({"grad_norms": r["grad_norms"]} if "grad_norms" in r else {}),
            task_wall_s=r["task_wall_s"], wall_time_s=sum(r["task_wall_s"]) + setup_s / K, stacked_with=K,
            # which encoder weights (birr.encoder.encoder_hash) and which feature cache file (its sha256)
            encoder=dict(_jsonable(stack.data.encoder_meta), weights_hash=d.inputs.get("encoder_hash")),
            features=dict(file=d.inputs.get("file"), sha256=d.inputs.get("sha256")),
            provenance=prov,
        )
        atomic_torch_save(model_path(results_dir, c), {n: v[k:k + 1].clone() for n, v in stack.model.state_dict().items()})
        atomic_write_json(results_path(results_dir, c), res, embed_digest=True)
        store.remove(paths[k])           # the result is stored: its state has nothing left to resume
        out.append(res)
    for p in paths:                      # and a diverged run's state is not resumed either
        store.remove(p)
    lines = [r["diverged"] for r in per_run if "diverged" in r]
    if lines:
        raise DivergedError(lines, out)
    return out


def _train_split(cfgs, tasks, results_dir, progress, checkpoint) -> list[dict]:
    """The runs of one stack whose checkpoints stand at different tasks (tasks[k]: run k's), trained as
    one stack per task, in the order of their first run, each resuming from its task (_train_stack's
    Resume). Each stack reads its runs' files itself, so only one stack's states are in memory at once."""
    groups: dict[int, list[Config]] = {}
    for c, t in zip(cfgs, tasks):
        groups.setdefault(t, []).append(c)
    out, lines = [], []
    for group in groups.values():
        try:
            out += _train_stack(group, results_dir, progress, checkpoint)
        except DivergedError as e:
            out, lines = out + e.results, lines + e.lines
    if lines:
        raise DivergedError(lines, out)
    return out


def _train_tasks(stack: Stack, cfgs: list[Config], per_run: list[dict], start_task: int,
                 ckpt_paths: list[Path] | None, progress: bool) -> None:
    """Tasks start_task.. of a stack (appendix §6), each run's record appended to per_run, run k's state saved
    to ckpt_paths[k] (None: not saved) after each task. See _train_stack."""
    cfg, d, K, device = stack.cfg, stack.data, stack.K, stack.device
    saved_task = start_task - 1
    B = cfg.batch
    try:
        for t in range(start_task, d.n_tasks + 1):
            t0 = time.time()
            gens = stack.generators(t)
            stack.begin_task(t)
            idx_t = d.task_indices(t)                                               # (K,N_t)
            n_t = idx_t.shape[1]
            if n_t < B:
                raise ValueError(f"task {t} has {n_t} training images, fewer than batch={B}")
            every = min(cfg.log_every, cfg.iters)   # a task shorter than log_every still logs its last iteration
            n_logs = cfg.iters // every
            logbuf = torch.zeros(n_logs, K, len(TERMS), device=device)
            rr_log = stack.new_rr_log(t)
            grad_iters = sorted({1, *range(cfg.grad_every, cfg.iters + 1, cfg.grad_every)}) if cfg.grad_every else []
            gradbuf = torch.zeros(len(grad_iters), K, len(GRAD_TERMS), len(GRAD_GROUPS), device=device)
            grad_slot = {it: j for j, it in enumerate(grad_iters)}
            order, pos = None, n_t
            bar = tqdm(range(1, cfg.iters + 1), desc=f"task {t}/{d.n_tasks}", disable=not progress, leave=False,
                       mininterval=1.0)
            stack.model.train()
            for it in bar:
                if pos + B > n_t:                                   # new shuffled epoch, drop_last (appendix §2)
                    perms = torch.stack([torch.randperm(n_t, generator=g, device=device) for g in gens])
                    order, pos = idx_t.gather(1, perms), 0
                idx = order[:, pos:pos + B]
                pos += B
                x = d.train_x[idx]                                                  # (K,B,D)
                y = d.train_y.gather(1, idx)                                        # (K,B)
                log = logbuf[it // every - 1] if it % every == 0 else None
                stack.step(t, x, y, gens, log, rr_log, gradbuf[grad_slot[it]] if it in grad_slot else None)
                if cfg.eval_every and it % cfg.eval_every == 0 and it != cfg.iters:
                    pt, _, _ = evaluate(stack.model, d)
                    for k in range(K):
                        per_run[k]["curves"].append(dict(task=t, iter=it, per_task=pt[k].tolist()))
                if progress and log is not None:   # no redraw now: tqdm's count is only current at its ticks
                    # the total includes c * L_SI (c = 1e8, appendix §5), which dwarfs everything else from task 2
                    # on (~1e14 at the short budget's lr), so the classification loss is shown beside it
                    bar.set_postfix(ce=f"{log[:, 3].mean().item():.3f}", total=f"{log[:, 0].mean().item():.3g}",
                                    refresh=False)
            stack.end_task()
            per_task, per_class, per_task_seen = evaluate(stack.model, d, n_seen=t * d.cpt)
            # finite weights per run (K,), read with the loss log: the one host read of the task's checks
            finite = torch.stack([torch.isfinite(p.detach()).flatten(1).all(1) for p in stack.model.parameters()]).all(0)
            logs, grads, finite = logbuf.cpu(), gradbuf.cpu(), finite.cpu()
            wall = time.time() - t0
            for k in range(K):
                r = per_run[k]
                r["acc_matrix"].append([v if i < t else None for i, v in enumerate(per_task[k].tolist())])
                r["acc_matrix_seen"].append([v if i < t else None for i, v in enumerate(per_task_seen[k].tolist())])
                r["per_class_acc_after_task"].append(per_class[k].tolist())
                r["curves"].append(dict(task=t, iter=cfg.iters, per_task=per_task[k].tolist()))
                r["loss_traces"].append(dict(task=t, iters=[(j + 1) * every for j in range(n_logs)],
                                             **{name: logs[:, k, j].tolist() for j, name in enumerate(TERMS)}))
                if grad_iters:
                    r.setdefault("grad_norms", []).append(dict(task=t, iters=grad_iters, **{
                        group: {term: grads[:, k, i, j].tolist() for i, term in enumerate(GRAD_TERMS)}
                        for j, group in enumerate(GRAD_GROUPS)}))
                if rr_log is not None and (cfgs[k].rr or cfgs[k].ra):
                    pairs = rr_log["pairs"][k].nonzero().tolist()
                    r["rr_stats"].append(dict(task=t, n_replayed=rr_log["n_replayed"],
                                              n_competitive=int(rr_log["n_competitive"][k]),
                                              n_kept=int(rr_log["n_kept"][k]), n_applied=int(rr_log["n_applied"][k]),
                                              n_rr_applied=int(rr_log["n_rr_applied"][k]),
                                              n_ra_applied=int(rr_log["n_ra_applied"][k]), iters=cfg.iters,
                                              pairs=[[a, b, int(rr_log["pairs"][k, a, b])] for a, b in pairs]))
                r["task_wall_s"].append(wall / K)
            # the finite-loss check, on the host copies just read: one line per run that diverged
            new = {k: line for k in range(K) if "diverged" not in per_run[k]
                   and (line := _divergence(cfgs[k], t, logs[:, k], every, bool(finite[k]))) is not None}
            stop = all("diverged" in r or k in new for k, r in enumerate(per_run))
            for k, line in new.items():
                per_run[k]["diverged"] = line + ("; training stopped, nothing is stored for it" if stop else
                                                 "; nothing is stored for it (the stack's other runs go on)")
                if not stop:
                    _note(per_run[k]["diverged"])
            if stop:                                      # nothing left worth training or checkpointing
                raise DivergedError([r["diverged"] for r in per_run])
            if progress:
                seen = per_task[:, :t].mean(1)
                print(f"[birr] task {t}/{d.n_tasks} done in {wall:.1f}s ({cfg.iters} iterations, batch {B}, {K} run(s), "
                      f"{1000 * wall / cfg.iters:.1f} ms/iteration) | mean acc on tasks 1..{t}: "
                      + ", ".join(f"{v:.3f}" for v in seen.tolist()))
            if ckpt_paths is not None:
                with _signals_deferred():   # each file is the checkpoint of a stack of that run alone
                    for k, path in enumerate(ckpt_paths):
                        atomic_torch_save(path, dict(format=CKPT_FORMAT, code_version=CODE_VERSION,
                                                     stamps=[cfgs[k].stamp], task=t, stack=stack.run_state(k),
                                                     per_run=[per_run[k]]))
                    saved_task = t
    except KeyboardInterrupt as e:
        e.saved_task = saved_task
        raise


def _jsonable(obj):
    """Keep the JSON-able part of the encoder artefact's metadata (no tensors)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if not isinstance(v, torch.Tensor)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


# --- public API --------------------------------------------------------------------------------

def run_many(cfgs: list[Config], *, results_dir=None, force: bool = False, progress: bool = True,
             max_stack: int = 32, checkpoint: bool = True) -> list[dict]:
    """Results for every config: loaded by stamp if finished, else trained. Missing runs that share
    their shapes are trained together as one stacked model (at most `max_stack` per stack), the
    stacks in the order their first config appears in `cfgs`. results_dir defaults to
    default_results_dir(). A run's numbers do not depend on its stack: on a CPU a run trained alone
    and the same run trained in a stack end with the same weights and accuracies, bit for bit
    (tests/test_train.py), fp32 and bf16, on every CPU: Adam steps run by run (`stacked.adam_step`)
    and each run gets its own matmul calls (`stacked.bmm`); logged loss values agree to rounding.

    checkpoint: after every task each run's state goes to results/ckpt/run-<stamp>.pt, and a killed run
    resumes from it in whatever stack it is trained next, beside any runs, in any order (_train_stack's
    Resume); the file goes once the run's result is stored. At the full size that state is ~260 MB per
    run (seconds per task for an 18-run stack); turn it off only where a killed stack may as well start
    again from task 1. A checkpoint records the code that wrote it (CODE_VERSION) and its run's stamp;
    one of other code, or of another run, is deleted and its run starts from task 1, as with force=True,
    and both say so on stderr. The whole-stack checkpoints of older code are deleted (one line says so).

    Runs whose losses or weights stop being finite store nothing; once every stack has trained,
    DivergedError names them, one line each, with the results of the others in its `results`."""
    if isinstance(cfgs, Config):
        raise TypeError("run_many takes a list of Configs; for one config use birr.run(cfg)")
    cfgs = list(cfgs)
    for i, c in enumerate(cfgs):
        if not isinstance(c, Config):
            raise TypeError(f"cfgs[{i}] is a {type(c).__name__} ({c!r}), not a Config; make one with birr.preset(...)")
    if isinstance(max_stack, bool) or not isinstance(max_stack, int) or max_stack < 1:
        raise ValueError(f"max_stack={max_stack!r} is not allowed; it must be an integer >= 1")
    if results_dir is not None and str(results_dir) == "":
        raise ValueError("results_dir='' is not allowed; name a folder (or None for the default)")
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    if not results_dir.is_dir() and results_dir.exists():  # fail now, not after hours of training
        raise NotADirectoryError(f"results_dir={str(results_dir)!r} is a file, not a folder")
    done: dict[str, dict] = {}
    todo: dict[tuple, list[Config]] = {}
    for c in cfgs:
        r = None if force else load_result(results_dir, c)
        if r is not None:
            done[c.stamp] = r
            if _checkpoint_path(results_dir, c).exists():     # left by a kill between its result and its removal
                store.remove(_checkpoint_path(results_dir, c))
        elif c.stamp not in {x.stamp for g in todo.values() for x in g}:
            todo.setdefault(_stack_key(c), []).append(c)
    if todo:
        _check_writable(results_dir)
        _remove_stack_checkpoints(results_dir)
    diverged = []
    for group in todo.values():
        for i in range(0, len(group), max_stack):
            try:
                trained = _train_stack(group[i:i + max_stack], results_dir, progress, checkpoint, fresh=force)
            except DivergedError as e:       # the other stacks still train; the diverged runs are named at the end
                trained, diverged = e.results, diverged + e.lines
            for r in trained:
                done[r["stamp"]] = r
    if diverged:
        raise DivergedError(diverged, [_as_asked(done[c.stamp], c) for c in cfgs if c.stamp in done])
    return [_as_asked(done[c.stamp], c) for c in cfgs]


def _check_writable(results_dir: Path) -> None:
    """Write a file in results_dir (created if missing) and in each of its runs/, models/, ckpt/ that
    exists, before training: an unwritable folder is a one-line error now rather than after the first
    task (or, without checkpoints, after all of them). Nothing but results_dir itself is left behind."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        for folder in [results_dir] + [results_dir / sub for sub in ("runs", "models", "ckpt")]:
            if folder.is_dir():
                probe = folder / f".write-test{os.getpid()}"
                probe.write_text("")
                probe.unlink()
    except OSError as e:
        raise OSError(f"results_dir={str(results_dir)!r} cannot be written ({e.strerror or e}); choose another "
                      f"(results_dir=, --results-dir or $BIRR_RESULTS)") from None


def _as_asked(r: dict, cfg: Config) -> dict:
    """A result under the method label it was asked for. `method` is a label, not stamped (Config.NOT_STAMPED):
    preset('rr+ra', rr=False, ra=False, rep_f=None) is the same run as preset('bir+si'), stored once under
    whichever label trained it first; each caller gets it back under its own."""
    if r["method"] == cfg.method:
        return r
    return dict(r, method=cfg.method, config=dict(r["config"], method=cfg.method))


def run(cfg: Config, *, results_dir=None, force: bool = False, progress: bool = True) -> dict:
    """Train one run (or load it by its stamp) and return its results dict."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg={cfg!r} is a {type(cfg).__name__}, not a Config; make one with birr.preset(...), "
                        f"e.g. birr.preset('bir+si', budget='smoke')")
    return run_many([cfg], results_dir=results_dir, force=force, progress=progress)[0]
