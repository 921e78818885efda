"""Continual training of BI-R (+SI, +RR/RA): the task loop of appendix §6, run / run_many, results and
per-run checkpoints.

`run(cfg)` trains one run or loads it by its stamp; `run_many(cfgs)` trains every missing run of a list,
stacking runs that share their shapes into one batched model (birr.stacked; one process keeps the
machine busy): seeds, RR/RA switches, lambdas, f and SI strength may differ inside a stack (PER_RUN),
nothing else. A stack's training step is birr.learner's; the encoder features live on the device
(appendix §3 "consequence") and a batch is an index gather. After every task each run's state goes to a
checkpoint file of its own, from which a killed run resumes, bit for bit (_train_stack).
"""
from __future__ import annotations

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
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from birr import metrics
from birr import stacked
from birr import store
from birr.config import Config
from birr.learner import GRAD_GROUPS, GRAD_TERMS, TERMS, Learner, TaskData  # noqa: F401 (TaskData: the API)
from birr.metrics import evaluate
from birr.model import BIR

# fields that may differ between the runs of one stack (per-run tensors in the step)
PER_RUN = ("seed", "rr", "ra", "lambda_rr", "lambda_ra", "rep_f", "si_c", "method")
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
TRAINING_SOURCES = ("config", "data", "encoder", "fast", "learner", "losses", "metrics", "model", "rr", "si",
                    "stacked", "store", "train")


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
    stack = Learner(cfgs, device, progress=progress)
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
    omega, the paper variant's class means, and its records so far (Learner.run_state). Nothing else
    carries over between tasks: SI's path integral restarts at zero with each task, the previous model
    is the trained one, and every random stream derives from (seed, task) (Learner.generators). So a run
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


def _train_tasks(stack: Learner, cfgs: list[Config], per_run: list[dict], start_task: int,
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
