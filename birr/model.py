"""The BI-R model of appendix §4: a classifier with a VAE attached through feedback connections.

Read top to bottom: the model (encoder fcE, split layer toZ, classifier head, gated decoder, GMM prior)
-> sampling for replay.

Every parameter carries a leading *run* dimension K = len(seeds). `BIR([seed])` is one run; thirty seeds
are thirty independent runs (seeds or RR settings) trained in one process, each layer a
`birr.stacked.StackedLinear`, so small runs fill the machine; birr.stacked says why a run trained in a
stack ends with the bits it has alone.

Shapes use the paper's letters: K runs, B samples, D = 1024 encoder features, H = fc_units (2000),
Z = z_dim (100), C = n_classes (100).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from birr.stacked import StackedLinear, bmm


class BIR(nn.Module):
    """Appendix §4: fcE 1024->H->H, toZ (mu with bias, logvar without), head on hE ("beforeZ"),
    decoder Z->H->H->1024 with fixed class gates on the first two layers, GMM prior with one mode
    per class. Trainable parameters for the CIFAR-100 configuration: 12,925,224 per run (appendix §4.4).
    """

    def __init__(self, seeds: list[int], n_classes: int = 100, fc_units: int = 2000, z_dim: int = 100,
                 in_dim: int = 1024, dg_prop: float = 0.6):
        super().__init__()
        self.K, self.C, self.H, self.Z, self.D = len(seeds), n_classes, fc_units, z_dim, in_dim
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        H, Z, D, C = fc_units, z_dim, in_dim, n_classes
        # encoder fcE (appendix §4.1): two ReLU layers, no BN, no dropout
        self.fcE1 = StackedLinear(D, H, gens)
        self.fcE2 = StackedLinear(H, H, gens)
        # split layer toZ: mu with bias, logvar WITHOUT bias (appendix §4.1)
        self.toZ_mu = StackedLinear(H, Z, gens)
        self.toZ_logvar = StackedLinear(H, Z, gens, bias=False)
        # classifier head on hE, not on z
        self.head = StackedLinear(H, C, gens)
        # decoder (appendix §4.2): fromZ (gated, ReLU) -> fcD1 (gated, ReLU) -> fcD2 (linear output)
        self.fromZ = StackedLinear(Z, H, gens)
        self.fcD1 = StackedLinear(H, H, gens)
        self.fcD2 = StackedLinear(H, D, gens)
        # fixed binary class gates M[c, unit]: 0 with probability dg_prop, drawn once, fromZ's first.
        # Unlike the reference (plain attributes, lost on save), they are buffers: a checkpoint reloads
        # the same model (appendix §4.2).
        self.register_buffer("gate_fromZ", torch.stack([(torch.rand(C, H, generator=g) >= dg_prop).float() for g in gens]))
        self.register_buffer("gate_fcD1", torch.stack([(torch.rand(C, H, generator=g) >= dg_prop).float() for g in gens]))
        # class-conditional GMM prior (appendix §4.3): all C modes exist from the start, N(0, 1) init
        self.z_class_means = nn.Parameter(torch.stack([torch.randn(C, Z, generator=g) for g in gens]))
        self.z_class_logvars = nn.Parameter(torch.stack([torch.randn(C, Z, generator=g) for g in gens]))

    # --- forward pieces -----------------------------------------------------------------------
    def encode(self, x):
        """x (K,B,D) -> hE (K,B,H), mu, logvar (K,B,Z), logits (K,B,C)."""
        hE = F.relu(self.fcE2(F.relu(self.fcE1(x))))
        return hE, self.toZ_mu(hE), self.toZ_logvar(hE), self.head(hE)

    def classify(self, x):
        """Logits over all C classes (appendix §7: evaluation never touches mu or z)."""
        return self.head(F.relu(self.fcE2(F.relu(self.fcE1(x)))))

    def decode(self, z, g=None, y=None):
        """z (K,B,Z) -> reconstruction (K,B,D). Each sample's class vector is a row of g (K,B_g,C: soft
        teacher probabilities for replay, or one-hot), or, for the first B_y samples, its class index in
        y (K,B_y); B_y + B_g = B. Gated layer: ReLU((g @ M) * (W h + b)) (appendix §4.2)."""
        a = self.fromZ(z)
        h = F.relu(self.class_gate(self.gate_fromZ, g, y, a.dtype) * a)      # (K,B,H)
        a = self.fcD1(h)
        h = F.relu(self.class_gate(self.gate_fcD1, g, y, a.dtype) * a)       # (K,B,H)
        return self.fcD2(h)                                                   # (K,B,D), linear output

    @staticmethod
    def class_gate(M, g, y, dtype):
        """The gate g @ M of appendix §4.2 for every sample, (K,B,H). For a known class c (y) the one-hot
        product is M's row c: gathered, not multiplied (the reference multiplies, a 2 x B x C x H
        matmul per layer, for speed). M is 0/1, so the row equals the product bit for bit, in bf16 too."""
        M, rows = M.to(dtype), []                               # cast the C x H table once, not B x H rows
        if y is not None:
            k = torch.arange(M.shape[0], device=y.device)[:, None]
            rows.append(M[k, y])
        if g is not None:
            rows.append(bmm(g.to(dtype), M))
        return rows[0] if len(rows) == 1 else torch.cat(rows, 1)

    @staticmethod
    def reparameterize(mu, logvar, eps):
        """z = mu + eps * exp(logvar / 2)."""
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(self, x, g, eps, y=None):
        """Full pass: returns (logits, mu, logvar, z, reconstruction). The class vectors of the decoder's
        gates: the labels y of the first y.shape[1] samples, the rows of g for the rest (see decode)."""
        hE, mu, logvar, logits = self.encode(x)
        z = self.reparameterize(mu, logvar, eps)
        return logits, mu, logvar, z, self.decode(z, g, y)

    # --- replay -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, classes, eps):
        """Generate replay (appendix §4.3): classes (K,B) long, eps (K,B,Z) -> features (K,B,D).
        z = mu_c + eps * exp(logvar_c / 2), decoded through the one-hot gate of c."""
        k = torch.arange(self.K, device=classes.device)[:, None]
        z = self.reparameterize(self.z_class_means[k, classes], self.z_class_logvars[k, classes], eps)
        return self.decode(z, y=classes)

    def n_params_per_run(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad) // self.K

    # names of the parameters SI's path integral runs over in the reference (appendix §6)
    SI_FCE_HEAD = ("fcE1.", "fcE2.", "head.")
