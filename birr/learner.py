"""The learner of appendix §6: K runs' model, the frozen previous model that replays, and their update,
one training step at a time.

A task is `begin_task`, then `step` per iteration, then `end_task`; birr.train runs the tasks. A step
(appendix §6 step 3) draws the current batch's noise, replays from the previous model, passes both
batches through the model at once, computes the loss terms of Eq. 1 (losses.bir_loss, with RR and RA
of birr.rr), backpropagates, and hands the gradients to the held update: Adam and SI (`AdamSI`, eager,
or with Config.compile fast.FusedAdamSI, the same arithmetic in one pass per parameter).

Nothing in a step reads a value back to the host (the reference makes ~512 `.item()` calls a step,
appendix §10): loss terms and RR / RA's counts are accumulated on the device and read once per task.
Every random stream derives from (seed, task), so a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from birr import data as bdata
from birr import fast
from birr import losses as L
from birr import rr as RR
from birr import stacked
from birr.config import Config
from birr.model import BIR
from birr.si import SynapticIntelligence

# the terms a step logs (the loss terms of losses.bir_loss, c L_SI's value, and a total that includes it)
TERMS = ("total", "recon", "kl", "ce", "recon_r", "kl_r", "distill_r", "rr", "ra", "si")
# Config.grad_every: the norm of each term's gradient (as weighted in the total loss, appendix §5) on two
# parameter groups. The decoder is where RR and RA act; fcE is what SI protects and the classifier reads.
GRAD_TERMS = ("reconstruction", "kl", "classification", "distillation", "si", "rr", "ra")
GRAD_GROUPS = {"decoder": ("fromZ.", "fcD1.", "fcD2."), "fcE": ("fcE1.", "fcE2.")}


class TaskData:
    """Encoder features of every image on the device, plus each run's labels (its own class order).

    The features do not depend on the seed (only labels are permuted, appendix §2), so K runs with K seeds
    share one feature bank and differ only in their label vectors.
    """

    def __init__(self, cfg: Config, seeds: list[int], device: torch.device, progress: bool = False):
        from birr import encoder as benc
        from birr import features as bfeat
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
        train, test = bfeat.features(enc, b0, device=str(device), progress=progress, info=self.inputs)
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


class AdamSI:
    """The update of appendix §6 steps 3.3-3.4: SI's penalty gradient joins the loss's, Adam steps (one
    optimiser for the whole run, never reset between tasks, appendix §1), SI's path integral takes the
    step. Adam is torch.optim.Adam's fused step on its own state, run by run (stacked.adam_step)."""

    def __init__(self, opt: torch.optim.Adam, params: dict, si: SynapticIntelligence, K: int):
        self.opt, self.params, self.si, self.K = opt, params, si, K

    def step(self, si_grad: bool) -> None:
        if any(p.grad is None for p in self.params.values()):
            raise RuntimeError("the fp32 parameters have no gradient: with bf16 weight copies (bf16 + compile) "
                               "the gradients are the copies', which only the fused update reads")
        if si_grad:
            self.si.add_grad(self.params)                   # g += 2 c omega (p - p*)
        self.si.remember(self.params)
        stacked.adam_step(self.opt, list(self.params.values()), self.K)
        self.si.accumulate(self.params)                     # W += -g (p_new - p_old)


class Learner:
    """The training of appendix §6 for K runs together: the model, the previous model, the update, the
    per-run settings (seeds, SI strength, RR / RA weights and f may differ inside a stack, train.PER_RUN)."""

    def __init__(self, cfgs: list[Config], device: torch.device, data: TaskData | None = None, progress=False):
        self.cfgs, self.cfg, self.device, self.K = cfgs, cfgs[0], device, len(cfgs)
        self.data = data if data is not None else TaskData(self.cfg, [c.seed for c in cfgs], device, progress)
        c, d = self.cfg, self.data
        self.model = BIR([x.seed for x in cfgs], n_classes=d.n_classes, fc_units=c.fc_units, z_dim=c.z_dim,
                         in_dim=d.train_x.shape[1], dg_prop=c.dg_prop).to(device)
        self.params = dict(self.model.named_parameters())
        self.prev: BIR | None = None
        vec = lambda name, fill=0.0: torch.tensor([float(getattr(x, name) if getattr(x, name) is not None else fill)
                                                   for x in cfgs], device=device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(0.9, 0.999), fused=True)
        self.si = SynapticIntelligence(self.params, [n for n in self.params if c.si_params == "all"
                                                     or n.startswith(BIR.SI_FCE_HEAD)], vec("si_c"), c.si_eps)
        self.lambda_rr, self.lambda_ra = vec("lambda_rr") * vec("rr"), vec("lambda_ra") * vec("ra")
        self.rep_f, self.use_f = vec("rep_f", 1.0), torch.tensor([x.rep_f is not None for x in cfgs], device=device)
        self.any_rr = any(x.rr or x.ra for x in cfgs)
        self.paper_means = torch.zeros(self.K, d.n_classes, self.model.D, device=device)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if c.bf16 else nullcontext()
        # the passes and the update; Config.compile puts compiled ones in their place (fast.compile_learner)
        self.forward, self.losses, self.low = self.model, self.loss_terms, {}
        self.update = AdamSI(self.opt, self.params, self.si, self.K)
        self.sample = self.classify_prev = None             # the previous model's, from the first end_task
        if c.compile:
            fast.compile_learner(self)

    def generators(self, t: int) -> list[torch.Generator]:
        """Task t's random stream of each run, from (seed, task)."""
        return [torch.Generator(self.device).manual_seed(x.seed * 1_000_003 + t) for x in self.cfgs]

    def randn(self, gens, *shape):
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in gens])

    def randint(self, gens, high, *shape):
        return torch.stack([torch.randint(high, shape, generator=g, device=self.device) for g in gens])

    def begin_task(self, t: int):
        """Appendix §6 step 1: SI's path integral starts at zero; the paper variant's class means gain the
        new task's classes (the mean feature of their real training images)."""
        self.si.begin_task()
        if self.cfg.rr_variant == "paper":
            lo = (t - 1) * self.data.cpt
            self.paper_means[:, lo:lo + self.data.cpt] = self.data.class_means(t)

    def step(self, t: int, x, y, gens, log=None, rr_log=None, grad_log=None):
        """One iteration (appendix §6 step 3) on the current batch x (K,B,D), y (K,B). Writes the logged
        terms into `log` (K, len(TERMS)), RR / RA's counts into `rr_log` (rr.new_pair_log) and the terms'
        gradient norms into `grad_log` (K, len(GRAD_TERMS), len(GRAD_GROUPS)), each if given."""
        B, zeros = x.shape[1], torch.zeros(self.K, device=self.device)
        x_in, g, eps = x, None, self.randn(gens, B, self.model.Z)   # current data: its eps drawn first
        x_r = teacher = gates = None
        if self.prev is not None and self.cfg.replay == "generative":
            x_r, teacher, gates = self.replay(t, gens)
            # one pass over the current and the replayed samples together: every weight is read once and
            # its gradient is one product, not two that autograd then adds (the same numbers up to rounding)
            x_in, g = torch.cat([x, x_r], 1), F.pad(gates, (0, self.data.n_classes - gates.shape[-1]))
            eps = torch.cat([eps, self.randn(gens, x_r.shape[1], self.model.Z)], 1)
        with self.autocast:
            out = self.forward(x_in, g, eps, y)             # current samples gated by their labels y
        terms = self.losses(t, out, x, y, x_r, teacher, gates)
        if terms["stats"] is not None and rr_log is not None:
            RR.log_pairs(rr_log, terms["stats"], self.cfg.rr_variant, self.cfg.batch_replay)
        if grad_log is not None:
            grad_log.copy_(term_grad_norms(self, t, terms))
        # every parameter gets a gradient in every step: dropping .grad instead of zero-filling it changes no bit
        self.opt.zero_grad(set_to_none=True)
        for low in self.low.values():
            low.grad = None
        terms["total"].sum().backward()     # runs are independent: d(sum)/d(run k's params) = d(loss_k)/d(...)
        si = self.si.penalty(self.params) if t > 1 and log is not None else zeros   # its value only when logged
        self.update.step(si_grad=t > 1)
        if log is not None:     # a run without RR / RA logs zeros, as it would alone, whatever its stack computes
            logged = dict(terms, total=terms["total"].detach() + self.si.c * si, si=si,
                          rr=torch.where(self.lambda_rr > 0, terms["rr"], zeros),
                          ra=torch.where(self.lambda_ra > 0, terms["ra"], zeros))
            log.copy_(torch.stack([logged[name] for name in TERMS], 1).detach())

    def replay(self, t: int, gens):
        """Appendix §6 step 3.2: a batch from the frozen previous model, uniform over the old classes. The
        class it was generated from is discarded: the teacher's logits define targets and (soft, T = 2)
        gates. Returns the replayed features, the teacher's logits over the old classes and the gates."""
        n_old, Br = self.data.cpt * (t - 1), self.cfg.batch_replay
        with torch.no_grad(), self.autocast:
            x_r = self.sample(self.randint(gens, n_old, Br), self.randn(gens, Br, self.model.Z)).float()
            teacher = self.classify_prev(x_r)[..., :n_old].float()           # (K,Br,C_old)
            gates = F.softmax(teacher / self.cfg.temp, dim=-1)
        return x_r, teacher, gates

    def loss_terms(self, t: int, out, x, y, x_r=None, teacher=None, gates=None) -> dict:
        """losses.bir_loss of the model's pass `out` over the current samples and, after them, the replayed
        ones (x_r, teacher, gates: None without replay). Under Config.compile on a CPU this runs compiled."""
        B, c = x.shape[1], self.cfg
        replay = None if x_r is None else (x_r, teacher, gates, tuple(o[:, B:] for o in out))
        return L.bir_loss(t, x, y, tuple(o[:, :B] for o in out), self.model.z_class_means,
                          self.model.z_class_logvars, n_active=self.data.cpt * t, temp=c.temp,
                          kl_divisor=c.kl_divisor, replay=replay, rr_ra=self.rr_ra if self.any_rr else None,
                          lambda_rr=self.lambda_rr, lambda_ra=self.lambda_ra)

    def rr_ra(self, x_r, x_recon_r, logits_r, teacher):
        """RR and RA (appendix §8) of the stack's variant, birr.rr."""
        if self.cfg.rr_variant == "code":
            return RR.rr_ra_code(x_r, x_recon_r, teacher, self.rep_f, self.use_f)
        return RR.rr_ra_paper(x_recon_r, logits_r, self.paper_means[:, :logits_r.shape[-1]], self.rep_f,
                              self.use_f, validate=False)                    # Config checked f

    def new_rr_log(self, t: int) -> dict | None:
        """Task t's RR / RA counters (rr.new_pair_log), or None where nothing is counted."""
        return RR.new_pair_log(self.K, self.data.n_classes, self.device) if self.any_rr and t > 1 else None

    def end_task(self):
        """Appendix §6 steps 4-5: SI's importances and anchor, then the previous model <- a copy."""
        self.si.end_task(self.params)
        self._set_prev()

    def _set_prev(self):
        """The frozen previous model that generates replay: made once, then overwritten in place, so a
        compiled sampler stays bound to the same module."""
        if self.prev is not None:
            with torch.no_grad():
                for a, b in zip(self.prev.state_dict().values(), self.model.state_dict().values()):
                    a.copy_(b)      # (into a bf16 layer: the same round-to-nearest as autocast's cast)
            return
        self.prev = copy.deepcopy(self.model).eval()
        for p in self.prev.parameters():
            p.requires_grad_(False)
        if self.cfg.bf16:
            fast.cast_linear_to_bf16(self.prev)
        self.sample, self.classify_prev = self.prev.sample, self.prev.classify
        if self.cfg.compile:
            self.sample, self.classify_prev = fast.compile_static(self.sample), fast.compile_static(self.classify_prev)

    # --- checkpoint: what carries over between tasks -------------------------------------------------
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
        fast.refresh_bf16_copies(self.low, self.params)
        self._set_prev()


def term_grad_norms(learner: Learner, t: int, terms: dict) -> torch.Tensor:
    """(K, len(GRAD_TERMS), len(GRAD_GROUPS)): for each run, the L2 norm of each loss term's gradient,
    weighted as in the total loss (appendix §5: 1/t on the current terms, 1 - 1/t on the replayed ones,
    lambda (1 - 1/t) on RR and RA, c on L_SI), over the decoder's and over fcE's weights and biases.
    One extra backward pass per term through the step's graph (kept for the step's own backward, which
    follows unchanged); SI's gradient is its closed form 2 c omega (p - p*) (si.add_grad)."""
    params, si, rnt = learner.params, learner.si, 1.0 / t
    weighted = dict(reconstruction=rnt * terms["recon"] + (1 - rnt) * terms["recon_r"],
                    kl=rnt * terms["kl"] + (1 - rnt) * terms["kl_r"], classification=rnt * terms["ce"],
                    distillation=(1 - rnt) * terms["distill_r"], si=None,
                    rr=(1 - rnt) * L.weighted(learner.lambda_rr, terms["rr"]),
                    ra=(1 - rnt) * L.weighted(learner.lambda_ra, terms["ra"]))
    names = [[n for n in params if n.startswith(prefixes)] for prefixes in GRAD_GROUPS.values()]
    flat = [n for group in names for n in group]
    out = torch.zeros(learner.K, len(GRAD_TERMS), len(GRAD_GROUPS), device=learner.device)
    for i, term in enumerate(GRAD_TERMS):
        if term == "si":
            if t == 1:
                continue      # omega is zero until the first task ends
            with torch.no_grad():
                grads = [si.scale[n] * (params[n] - si.anchor[n]) if n in si.scale else None for n in flat]
        elif weighted[term].requires_grad:
            grads = torch.autograd.grad(weighted[term].sum(), [params[n] for n in flat],
                                        retain_graph=True, allow_unused=True)
        else:
            continue          # a constant zero (no replay in task 1, or no RR/RA in this stack)
        by_name = dict(zip(flat, grads))
        for j, group in enumerate(names):
            sq = [by_name[n].float().flatten(1).pow(2).sum(1) for n in group if by_name[n] is not None]
            if sq:
                out[:, i, j] = torch.stack(sq).sum(0).sqrt()
    return out
