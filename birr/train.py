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
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from birr import results as R
from birr import stacked
from birr import store
from birr.config import Config
from birr.learner import GRAD_GROUPS, GRAD_TERMS, TERMS, Learner, TaskData  # noqa: F401 (the package's API)
from birr.metrics import evaluate
from birr.results import (DivergedError, atomic_torch_save, atomic_write_json, default_results_dir,  # noqa: F401
                          load_model, load_result, model_path, provenance, resolve_device, results_path)

# fields that may differ between the runs of one stack (per-run tensors in the step)
PER_RUN = ("seed", "rr", "ra", "lambda_rr", "lambda_ra", "rep_f", "si_c", "method")


# The code a checkpoint was written by: a hash of the source of the modules training runs (read when
# this module is imported, i.e. of the code that is running). A checkpoint of other code is not resumed:
# its state would continue under other arithmetic, and the result would be stored under a stamp that
# says nothing of the change. Only these modules: an edit to the book's report code keeps checkpoints.
TRAINING_SOURCES = ("archives", "config", "data", "encoder", "fast", "features", "learner", "losses", "metrics", "model", "results", "rr",
                    "si", "stacked", "store", "train")


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
    per_run = [R.new_record() for _ in cfgs]
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
        res = R.result(c, k, r, d, K, setup_s, prov)
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
                R.record_task(per_run[k], k, cfgs[k], t, (per_task, per_class, per_task_seen), logs, every, grads,
                              grad_iters, rr_log, wall / K)
            # the finite-loss check, on the host copies just read: one line per run that diverged
            new = {k: line for k in range(K) if "diverged" not in per_run[k]
                   and (line := R.divergence(cfgs[k], t, logs[:, k], every, bool(finite[k]))) is not None}
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
                with store.signals_deferred():   # each file is the checkpoint of a stack of that run alone
                    for k, path in enumerate(ckpt_paths):
                        atomic_torch_save(path, dict(format=CKPT_FORMAT, code_version=CODE_VERSION,
                                                     stamps=[cfgs[k].stamp], task=t, stack=stack.run_state(k),
                                                     per_run=[per_run[k]]))
                    saved_task = t
    except KeyboardInterrupt as e:
        e.saved_task = saved_task
        raise


# --- public API --------------------------------------------------------------------------------

def run_many(cfgs: list[Config], *, results_dir=None, force: bool = False, progress: bool = True,
             max_stack: int = 32, checkpoint: bool = True) -> list[R.Result]:
    """Results for every config: loaded by stamp if finished, else trained. Missing runs that share
    their shapes are trained together as one stacked model (at most `max_stack` per stack), the
    stacks in the order their first config appears in `cfgs`. results_dir defaults to
    default_results_dir(). A run's numbers do not depend on its stack: on a CPU a run trained alone
    and the same run trained in a stack end with the same weights and accuracies, bit for bit
    (tests/test_stacked.py), fp32 and bf16, on every CPU: Adam steps run by run (`stacked.adam_step`)
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
        R.check_writable(results_dir)
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
        raise DivergedError(diverged, [R.as_asked(done[c.stamp], c) for c in cfgs if c.stamp in done])
    return [R.as_asked(done[c.stamp], c) for c in cfgs]


def run(cfg: Config, *, results_dir=None, force: bool = False, progress: bool = True) -> R.Result:
    """Train one run (or load it by its stamp) and return its results dict."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg={cfg!r} is a {type(cfg).__name__}, not a Config; make one with birr.preset(...), "
                        f"e.g. birr.preset('bir+si', budget='smoke')")
    return run_many([cfg], results_dir=results_dir, force=force, progress=progress)[0]
