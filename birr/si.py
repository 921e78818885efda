r"""Synaptic intelligence (SI; Zenke et al. 2017) as the reference runs it, appendix §6.

While task t trains, every protected parameter p accumulates its path integral, its contribution to
the decrease of the loss, step by step: $W \mathrel{+}= -g \odot (p_{new} - p_{old})$ with g the
gradient of the step's full loss. At the end of the task that becomes an importance,
$\omega \mathrel{+}= W / (\Delta^2 + \epsilon)$ with $\Delta = p - p^*$ the distance moved since the last
anchor $p^*$, and the anchor moves to p. Later tasks pay $c\, L_{SI}$ with
$L_{SI} = \sum_n \sum \omega_n (p_n - p^*_n)^2$. The reference accumulates W for the encoder fcE and the
classifier head only, so SI protects those alone (appendix §6, "Consequence"). Every tensor keeps a
leading run axis K; c is one strength per run.
"""
from __future__ import annotations

import torch


def si_importance(W: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    r"""A task's importance of each parameter (appendix §6 step 4): $W / (\Delta^2 + \epsilon)$, the path
    integral over the squared distance moved in the task, damped by eps (0.1)."""
    return W / (delta.pow(2) + eps)


def si_penalty(params, omegas, anchors) -> torch.Tensor:
    r"""$L_{SI} = \sum_n \sum \omega_n (p_n - p^*_n)^2$ per run (appendix §6). Lists of (K, ...) tensors -> (K,)."""
    total = 0.0
    for p, w, a in zip(params, omegas, anchors):
        total = total + (w * (p - a).pow(2)).flatten(1).sum(1)
    return total


class SynapticIntelligence:
    """SI's state and its four moments in training (appendix §6): `begin_task` (W = 0, step 1), each step's
    `add_grad` (the penalty's gradient) and `remember` / `accumulate` around the optimiser's step (the path
    integral, step 3.4), `end_task` (omega and the anchor, step 4). `penalty` is L_SI's value.

    params: the model's parameters by name; names: those W is accumulated for (omega stays 0 for the
    others, whose anchors are kept all the same, as the reference keeps them); c (K,): the strength per
    run; eps: the damping."""

    def __init__(self, params: dict, names: list[str], c: torch.Tensor, eps: float):
        self.names, self.c, self.eps = list(names), c, eps
        self.anchor = {n: p.detach().clone() for n, p in params.items()}   # start: the initial values
        self.omega = {n: torch.zeros_like(p) for n, p in params.items()}
        self.W: dict[str, torch.Tensor] = {}
        self.scale: dict[str, torch.Tensor] = {}
        # scratch of the eager step, allocated once, on first use: on the 2-core CPU, p - p* on a
        # 2000 x 2000 weight into a fresh tensor took three times as long as into this one
        self._tmp: dict[str, torch.Tensor] = {}
        self._old: dict[str, torch.Tensor] = {}

    def begin_task(self) -> None:
        """Step 1: the path integral starts again at zero."""
        self.W = {n: torch.zeros_like(self.anchor[n]) for n in self.names}

    def refresh_scale(self) -> None:
        """2 c omega per protected parameter: the penalty gradient's factor, fixed for a whole task."""
        self.scale = {n: self.omega[n] * (2 * self.c).view(-1, *[1] * (self.omega[n].dim() - 1))
                      for n in self.names}

    def penalty(self, params: dict) -> torch.Tensor:
        """L_SI per run, (K,). omega is 0 outside `names`, so the sum over them is the sum over all."""
        return si_penalty([params[n] for n in self.names], [self.omega[n] for n in self.names],
                          [self.anchor[n] for n in self.names])

    def add_grad(self, params: dict) -> None:
        """p.grad += d(c L_SI)/dp = 2 c omega (p - p*), in closed form: two passes over the protected
        parameters instead of autograd's ~6 over all of them (equal to autograd's gradient up to
        rounding, tests/test_si.py)."""
        with torch.no_grad():
            for n in self.names:
                p, tmp = params[n], self._scratch(self._tmp, n)
                torch.sub(p, self.anchor[n], out=tmp)
                p.grad.addcmul_(self.scale[n], tmp)

    def remember(self, params: dict) -> None:
        """p_old, before the optimiser's step."""
        with torch.no_grad():
            for n in self.names:
                self._scratch(self._old, n).copy_(params[n])

    def accumulate(self, params: dict) -> None:
        """Step 3.4, after the optimiser's step: W += -g (p_new - p_old), written as g (p_old - p_new)
        (the same bits, no temporary)."""
        with torch.no_grad():
            for n in self.names:
                p = params[n]
                self.W[n].addcmul_(p.grad, self._old[n].sub_(p))

    def end_task(self, params: dict) -> None:
        """Step 4: omega += W / (delta^2 + eps) (`si_importance`), then the anchor p* <- p."""
        with torch.no_grad():
            for n, p in params.items():
                if n in self.W:
                    self.omega[n] += si_importance(self.W[n], p - self.anchor[n], self.eps)
                self.anchor[n] = p.detach().clone()
        self.refresh_scale()

    def state(self) -> dict:
        return dict(anchor=self.anchor, omega=self.omega)

    def load_state(self, s: dict, device) -> None:
        self.anchor = {n: v.to(device) for n, v in s["anchor"].items()}
        self.omega = {n: v.to(device) for n, v in s["omega"].items()}
        self.refresh_scale()

    def _scratch(self, store: dict, n: str) -> torch.Tensor:
        if n not in store:
            store[n] = torch.empty_like(self.anchor[n])
        return store[n]
