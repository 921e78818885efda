"""A run's results: where and with what it was made (device, provenance), its record task by task, the
stored file (written atomically, found by its stamp, checked, older formats upgraded) and its saved model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TypedDict

import torch

from birr import metrics
from birr import store
from birr.config import Config
from birr.learner import GRAD_GROUPS, GRAD_TERMS, TERMS
from birr.model import BIR

# 2: forgetting and BWT from acc_matrix_seen (metrics.summarise); load_result upgrades format 1 files
RESULTS_FORMAT = 2


# --- where and with what ------------------------------------------------------------------------

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


# --- the stored files ---------------------------------------------------------------------------------

def atomic_write_json(path: Path, obj, *, embed_digest: bool = False) -> None:
    """JSON through birr.store's one atomic, durable writer (temp file, fsync, rename, fsync of the
    folder): readers never see half a file, and a write that fails is one OSError naming the file and
    leaves nothing behind. embed_digest: with a "sha256" of the content that load_result checks."""
    store.write_json(path, obj, embed_digest=embed_digest)


def atomic_torch_save(path: Path, obj) -> None:
    """The same for torch.save (checkpoints of a stack's state, trained models), with a sidecar
    `<file>.sha256` that is checked before the file is read again (birr.store)."""
    store.torch_save(path, obj)


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


def load_result(results_dir, cfg: Config) -> Result | None:
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


def check_writable(results_dir: Path) -> None:
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


def as_asked(r: dict, cfg: Config) -> dict:
    """A result under the method label it was asked for. `method` is a label, not stamped (Config.NOT_STAMPED):
    preset('rr+ra', rr=False, ra=False, rep_f=None) is the same run as preset('bir+si'), stored once under
    whichever label trained it first; each caller gets it back under its own."""
    if r["method"] == cfg.method:
        return r
    return dict(r, method=cfg.method, config=dict(r["config"], method=cfg.method))


# --- a run's record, task by task ---------------------------------------------------------------------

def new_record() -> dict:
    """A run's record before its first task: what record_task appends to, what a checkpoint carries."""
    return dict(acc_matrix=[], acc_matrix_seen=[], per_class_acc_after_task=[], curves=[], loss_traces=[],
                rr_stats=[], task_wall_s=[])


def record_task(r: dict, k: int, c: Config, t: int, evaluated, logs, every: int, grads, grad_iters: list,
                rr_log: dict | None, wall_s: float) -> None:
    """Append task t of run k of a stack (config c) to its record r: the accuracies after the task
    (evaluated = metrics.evaluate's per_task, per_class, per_task_seen), the loss terms logged every
    `every` iterations (logs (n_logs, K, len(TERMS)), on the host), the gradient norms (grads at
    grad_iters), RR / RA's counts (rr.new_pair_log) and its share of the task's wall time."""
    per_task, per_class, per_task_seen = evaluated
    r["acc_matrix"].append([v if i < t else None for i, v in enumerate(per_task[k].tolist())])
    r["acc_matrix_seen"].append([v if i < t else None for i, v in enumerate(per_task_seen[k].tolist())])
    r["per_class_acc_after_task"].append(per_class[k].tolist())
    r["curves"].append(dict(task=t, iter=c.iters, per_task=per_task[k].tolist()))
    r["loss_traces"].append(dict(task=t, iters=[(j + 1) * every for j in range(logs.shape[0])],
                                 **{name: logs[:, k, j].tolist() for j, name in enumerate(TERMS)}))
    if grad_iters:
        r.setdefault("grad_norms", []).append(dict(task=t, iters=grad_iters, **{
            group: {term: grads[:, k, i, j].tolist() for i, term in enumerate(GRAD_TERMS)}
            for j, group in enumerate(GRAD_GROUPS)}))
    if rr_log is not None and (c.rr or c.ra):
        pairs = rr_log["pairs"][k].nonzero().tolist()
        r["rr_stats"].append(dict(task=t, n_replayed=rr_log["n_replayed"], n_competitive=int(rr_log["n_competitive"][k]),
                                  n_kept=int(rr_log["n_kept"][k]), n_applied=int(rr_log["n_applied"][k]),
                                  n_rr_applied=int(rr_log["n_rr_applied"][k]),
                                  n_ra_applied=int(rr_log["n_ra_applied"][k]), iters=c.iters,
                                  pairs=[[a, b, int(rr_log["pairs"][k, a, b])] for a, b in pairs]))
    r["task_wall_s"].append(wall_s)


class DivergedError(ValueError):
    """Runs whose losses or weights stopped being finite: one line per run (stamp, seed, task, iteration,
    terms). `results` holds the runs of the same call that finished and were stored."""

    def __init__(self, lines: list[str], results: list[dict] | None = None):
        super().__init__("\n".join(lines))
        self.lines, self.results = list(lines), list(results or [])


def divergence(c: Config, t: int, logs: torch.Tensor, every: int, weights_finite: bool) -> str | None:
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


class _Stored(TypedDict):
    """The fields every stored run has (Result below adds the optional one)."""
    format: int                        # RESULTS_FORMAT
    stamp: str                         # Config.stamp: the file's name and the run's identity
    method: str                        # the preset it came from ("bir+si", "rr+ra", ...)
    dataset: str
    budget: str
    synthetic: bool                    # True: a smoke run, never a claim about CIFAR
    seed: int
    config: dict                       # Config.to_dict(): every hyper-parameter
    class_order: list[int]             # class_order[new label] = original label
    class_names: list[str]
    n_tasks: int
    classes_per_task: int
    acc_matrix: list[list]             # [after task t][task i]: accuracy over all classes (None for i > t)
    acc_matrix_seen: list[list]        # the same, choosing among the classes seen so far (appendix §7)
    per_class_acc: list[float]         # after the last task
    per_task_acc: list                 # acc_matrix's last row
    metrics: dict                      # metrics.summarise: first20, first50, overall, forgetting, bwt, ...
    per_class_acc_after_task: list[list[float]]
    curves: list[dict]                 # accuracy per task at the iterations evaluated
    loss_traces: list[dict]            # each task's loss terms (learner.TERMS) every log_every iterations
    rr_stats: list[dict]               # per task from 2 on: how often RR / RA were applied, competing pairs
    task_wall_s: list[float]
    wall_time_s: float                 # its tasks plus its share of the stack's set-up
    stacked_with: int                  # K, the number of runs trained together
    encoder: dict                      # the encoder artefact's metadata and weights hash
    features: dict                     # the feature cache file it read, and its sha256
    provenance: dict                   # provenance(): code, machine, device, library versions


class Result(_Stored, total=False):
    """A stored run (results/runs/<stamp>.json), as `result` writes it and `load_result` returns it.
    Accuracies are fractions in [0, 1]; task and class indices are 0-based new labels (appendix §2)."""
    grad_norms: list[dict]             # only with Config.grad_every: each term's gradient norm per group


def result(c: Config, k: int, r: dict, data, K: int, setup_s: float, prov: dict) -> Result:
    """The stored result of run k of a K-run stack (config c, record r, the stack's TaskData), in
    RESULTS_FORMAT: its config and stamp, class order, every accuracy matrix and the Table 1 metrics,
    loss traces, RR / RA's counts, wall times (the stack's set-up shared by its runs), the encoder and
    feature files it read (their hashes) and its provenance."""
    final_pc = r["per_class_acc_after_task"][-1]
    return dict(
        format=RESULTS_FORMAT, stamp=c.stamp, method=c.method, dataset=c.dataset, budget=c.budget,
        synthetic=c.dataset == "synthetic", seed=c.seed, config=c.to_dict(),
        class_order=data.benches[k].class_order, class_names=data.benches[k].class_names,
        n_tasks=data.n_tasks, classes_per_task=data.cpt,
        acc_matrix=r["acc_matrix"], acc_matrix_seen=r["acc_matrix_seen"], per_class_acc=final_pc,
        per_task_acc=r["acc_matrix"][-1], metrics=metrics.summarise(r["acc_matrix_seen"], final_pc),
        per_class_acc_after_task=r["per_class_acc_after_task"], curves=r["curves"],
        loss_traces=r["loss_traces"], rr_stats=r["rr_stats"], **({"grad_norms": r["grad_norms"]} if "grad_norms" in r else {}),
        task_wall_s=r["task_wall_s"], wall_time_s=sum(r["task_wall_s"]) + setup_s / K, stacked_with=K,
        # which encoder weights (birr.features.encoder_hash) and which feature cache file (its sha256)
        encoder=dict(jsonable(data.encoder_meta), weights_hash=data.inputs.get("encoder_hash")),
        features=dict(file=data.inputs.get("file"), sha256=data.inputs.get("sha256")),
        provenance=prov,
    )


def jsonable(obj):
    """Keep the JSON-able part of the encoder artefact's metadata (no tensors)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items() if not isinstance(v, torch.Tensor)}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
