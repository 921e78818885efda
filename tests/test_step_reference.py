"""One training step against an independent, per-sample re-implementation of appendix §5, §6 and §8.

birr's step is vectorised, stacked over runs, fused and (optionally) compiled; the other tests compare
those forms with each other. This file checks the numbers themselves: from the same parameters and the
same random draws, a deliberately naive version of the reference's loss (one sample at a time where
the reference loops: the class-conditional KL, the replay mixture with its max-subtraction and clamp,
RR's competitor pairs) must give the same gradient for every parameter, and the same SI path integral.
It pins, among others, rnt = 1/t (checked at t = 3, where 1/t and 1/2 differ), the T = 2 soft gates,
mixture weights and distillation (x T^2), CE over the classes seen so far, and the sign and weight
of lambda_RR * RR and lambda_RA * RA inside the replay loss (appendix §8.5).
"""
import pytest
import torch
import torch.nn.functional as F

import birr
from birr import train as T
from birr.learner import Learner


def _stack_before_step(t: int, task1_steps: int, **kw):
    """A one-run smoke learner trained a little on tasks 1..t-1 (so the teacher has opinions and SI has
    an omega), then three steps into task t; returns it with task t's first batch."""
    cfg = birr.preset(kw.pop("method", "bir+si"), budget="smoke", device="cpu", iters=20, log_every=5, **kw)
    stack = Learner([cfg], torch.device("cpu"))
    d = stack.data
    for task in range(1, t):
        idx = d.task_indices(task)[:, :cfg.batch]
        gens = stack.generators(task)
        stack.begin_task(task)
        for _ in range(task1_steps if task == 1 else 5):
            stack.step(task, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)
        stack.end_task()
    idx = d.task_indices(t)[:, :cfg.batch]
    x, y = d.train_x[idx], d.train_y.gather(1, idx)
    gens = stack.generators(t)
    stack.begin_task(t)
    for _ in range(3):
        stack.step(t, x, y, gens, None, None)
    return stack, cfg, x, y, gens


def _log_normal(z, mean, logvar):
    """log N(z; mean, exp(logvar)) up to the constant, summed over the latent dimensions (appendix §5)."""
    return (-0.5 * (logvar + (z - mean) ** 2 / torch.exp(logvar))).sum(-1)


def _reference_loss(p, q, Mz, M1, omega, anchor, cfg, t, n_classes, cpt, x, y, gen, teacher=None):
    """Spec §5/§6/§8 for one run, written out: p = this run's parameters (requires grad), q = the
    previous model's, Mz / M1 the two decoder gate tables; teacher(x_r) replaces the previous model's
    classifier when given. Draws from `gen` in the step's order:
    eps of the current samples, the replayed classes, their generation eps, then their training eps.
    Returns the total loss and the RR statistics (number of kept pairs)."""
    n_old, n_act = cpt * (t - 1), cpt * t
    B, Br, Z, C = x.shape[0], cfg.batch_replay, cfg.z_dim, n_classes

    def lin(P, name, h):                        # toZ_logvar has no bias (appendix §4.1)
        return h @ P[name + ".weight"] + (P[name + ".bias"].reshape(-1) if name + ".bias" in P else 0)

    def fcE(P, h):
        return F.relu(lin(P, "fcE2", F.relu(lin(P, "fcE1", h))))

    def decode(P, z, gate):                     # gate: (B, C) class vector -> its rows of M (appendix §4.2)
        h = F.relu((gate @ Mz) * lin(P, "fromZ", z))
        h = F.relu((gate @ M1) * lin(P, "fcD1", h))
        return lin(P, "fcD2", h)

    def forward(h, gate, eps):
        hE = fcE(p, h)
        mu, logvar = lin(p, "toZ_mu", hE), lin(p, "toZ_logvar", hE)
        z = mu + eps * torch.exp(0.5 * logvar)
        return decode(p, z, gate), lin(p, "head", hE), mu, logvar, z

    def half_mse(a, b):                         # ½ · squared error averaged over features (appendix §5)
        return 0.5 * ((a - b) ** 2).mean(-1)

    eps_cur = torch.randn(B, Z, generator=gen)
    classes = torch.randint(n_old, (Br,), generator=gen)
    eps_gen = torch.randn(Br, Z, generator=gen)
    eps_r = torch.randn(Br, Z, generator=gen)
    means, logvars = p["z_class_means"], p["z_class_logvars"]

    # current task: gated by the true label, KL to the label's mode (/3072), CE over seen classes
    rec, logits, mu, logvar, z = forward(x, F.one_hot(y, C).float(), eps_cur)
    kl = torch.stack([_log_normal(z[i], mu[i], logvar[i]) - _log_normal(z[i], means[y[i]], logvars[y[i]])
                      for i in range(B)]).mean() / cfg.kl_divisor
    loss_cur = half_mse(x, rec).mean() + kl + F.cross_entropy(logits[:, :n_act], y)

    # replay: the previous model generates, its T = 1 scores pick competitors, T = 2 makes gates/targets
    with torch.no_grad():
        z_gen = q["z_class_means"][classes] + eps_gen * torch.exp(0.5 * q["z_class_logvars"][classes])
        x_r = decode(q, z_gen, F.one_hot(classes, C).float())
        scores = (teacher(x_r) if teacher else lin(q, "head", fcE(q, x_r)))[:, :n_old]
    soft = F.softmax(scores / cfg.temp, 1)                                        # (Br, n_old)
    rec_r, logits_r, mu_r, logvar_r, z_r = forward(x_r, F.pad(soft, (0, C - n_old)), eps_r)
    log_modes = torch.stack([_log_normal(z_r, means[c], logvars[c]) for c in range(n_act)], 1)
    top = log_modes.max(1).values
    weights = F.pad(soft, (0, n_act - n_old))
    log_prior = torch.log(torch.clamp((weights * torch.exp(log_modes - top[:, None])).sum(1), min=1e-40)) + top
    kl_r = (_log_normal(z_r, mu_r, logvar_r) - log_prior).mean() / cfg.kl_divisor
    distill = cfg.temp ** 2 * (-(weights * F.log_softmax(logits_r[:, :n_act] / cfg.temp, 1)).sum(1)).mean()
    loss_rep = half_mse(x_r, rec_r).mean() + kl_r + distill

    n_kept = 0
    if cfg.rr or cfg.ra:                       # appendix §8.3-8.5, the fork's "code" variant
        probs = F.softmax(scores, 1)
        label, rival = scores.topk(2, 1).indices.unbind(1)
        competes = [cfg.rep_f is None or bool(probs[i, label[i]] < cfg.rep_f * probs[i, rival[i]]) for i in range(Br)]
        if any(competes):
            x_hat = {c: x_r[label == c].mean(0) for c in set(label.tolist())}      # per-batch class means
            inv = [1 / half_mse(x_hat[int(rival[i])], rec_r[i]) for i in range(Br)
                   if competes[i] and int(rival[i]) in x_hat]
            n_kept = len(inv)
            rr = torch.stack(inv).mean() if inv else torch.zeros(())
            ra = torch.stack([half_mse(x_hat[int(label[i])], rec_r[i]) for i in range(Br)]).mean()
            loss_rep = loss_rep + cfg.lambda_rr * rr + cfg.lambda_ra * ra
    rnt = 1 / t
    total = rnt * loss_cur + (1 - rnt) * loss_rep
    total = total + cfg.si_c * sum((omega[n] * (p[n] - anchor[n]) ** 2).sum() for n in p)
    return total, n_kept


# SI's gradient (c = 1e8) dwarfs the loss's on fcE and head, so all but the first case switch it off
# for the step compared (si=False), which makes every loss term visible in every parameter's gradient.
# lambdas are raised from 1e-6 so that RR and RA move the gradient beyond float rounding.
CASES = {
    "bir+si with SI, task 2": dict(t=2, si=True),
    "bir+si, task 2": dict(t=2),
    "bir+si, task 3 (rnt = 1/3, CE over 3 of 4 classes)": dict(t=3, n_tasks=4),
    "rr+ra f=20": dict(t=2, method="rr+ra", lambda_rr=1e-2, lambda_ra=10.0),
    "rr+ra no f": dict(t=2, method="rr+ra", rep_f=None, lambda_rr=1e-2, lambda_ra=10.0),
}


def _split_teacher(x_r):
    """Teacher scores from the replayed features themselves. The smoke model's teacher, a few steps
    into the run, calls every replayed sample the same class, so RR would have no pair to repel; these
    scores split the batch between the old classes with softmax gaps around f = 20's threshold."""
    s = x_r[..., :2]
    return 2.0 * (s - s.mean()) / s.std()


@pytest.mark.parametrize("case", list(CASES))
def test_step_gradients_equal_a_per_sample_reference(case):
    kw = dict(CASES[case])
    t, si = kw.pop("t"), kw.pop("si", False)
    stack, cfg, x, y, gens = _stack_before_step(t, task1_steps=40, **kw)
    if not si:
        stack.si.c.zero_()
        stack.si.refresh_scale()
        cfg = cfg.replace(si_c=0.0)
    teacher = _split_teacher if cfg.rr else None
    if teacher:
        stack.classify_prev = teacher
    p0 = {n: v.detach().clone() for n, v in stack.params.items()}
    q = {n: v[0].detach().clone() for n, v in stack.prev.named_parameters()}
    Mz, M1 = stack.model.gate_fromZ[0].clone(), stack.model.gate_fcD1[0].clone()
    omega = {n: v[0].clone() for n, v in stack.si.omega.items()}
    anchor = {n: v[0].clone() for n, v in stack.si.anchor.items()}
    state = gens[0].get_state()
    stack.si.begin_task()                            # W after the step = this step's term

    stack.step(t, x, y, gens, None, None)
    grads = {n: v.grad[0].clone() for n, v in stack.params.items()}

    p = {n: v[0].clone().requires_grad_(True) for n, v in p0.items()}
    total, n_kept = _reference_loss(p, q, Mz, M1, omega, anchor, cfg, t, stack.data.n_classes, stack.data.cpt,
                                    x[0], y[0], torch.Generator().set_state(state), teacher)
    total.backward()
    if cfg.rr:
        assert n_kept > 0, "the case must exercise RR's kept pairs"
    for n in p:
        ref = p[n].grad
        assert (grads[n] - ref).abs().max() <= 1e-4 * ref.abs().max() + 1e-12, n
    # SI's path integral over this step (appendix §6): W -= grad * (p_new - p_old), fcE and head only
    for n in stack.si.names:
        moved = stack.params[n].detach() - p0[n]
        ref = -stack.params[n].grad * moved
        assert (stack.si.W[n] - ref).abs().max() <= 1e-6 * ref.abs().max(), n
    assert set(stack.si.names) == {n for n in p if n.startswith(("fcE", "head"))}


def test_end_task_omega_is_the_path_integral_over_the_squared_distance():
    """Spec §6 steps 4-5: omega += W / (delta^2 + eps) with delta the distance moved in the task and
    eps = 0.1; the anchor becomes the current value."""
    stack, cfg, *_ = _stack_before_step(2, task1_steps=5)
    n = stack.si.names[0]
    old_omega, anchor = stack.si.omega[n].clone(), stack.si.anchor[n].clone()
    stack.si.W[n] = torch.full_like(stack.si.W[n], 0.3)
    with torch.no_grad():
        stack.params[n].copy_(anchor + 0.5)          # moved by 0.5 everywhere: delta^2 = 0.25
    stack.end_task()
    torch.testing.assert_close(stack.si.omega[n], old_omega + 0.3 / (0.25 + 0.1))
    torch.testing.assert_close(stack.si.anchor[n], anchor + 0.5)
    assert cfg.si_eps == 0.1
