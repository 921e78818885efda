"""
Figures drawn through the image-decoder lens (birr.lens): montages of decoded replay, a competing pair's
exaggerated reconstructions beside real images, and a t-SNE of a pair's real and replayed features. Each
returns or fills matplotlib axes; chapters glue the figures.
"""
from __future__ import annotations

import torch

from birr.lens import decode_images, difference_map, psnr, replay_features


def _plt():
    import matplotlib.pyplot as plt
    return plt


def image_rows(rows: list[tuple[str, torch.Tensor]], *, size: float = 0.9, col_titles=None, gap: int = 3):
    """A grid drawn as one montage (one imshow, fast): one row per (label, images (n, 3, 32, 32) in
    [0, 1] or uint8); rows may have different n (white cells). Row labels on the left, column titles on top."""
    plt = _plt()
    n = max(len(imgs) for _, imgs in rows)
    H = W = 32
    canvas = torch.ones(3, len(rows) * (H + gap) - gap, n * (W + gap) - gap)      # white background
    for r, (_, imgs) in enumerate(rows):
        for j, img in enumerate(imgs[:n]):
            img = img.float() / 255 if img.dtype == torch.uint8 else img
            canvas[:, r * (H + gap):r * (H + gap) + H, j * (W + gap):j * (W + gap) + W] = img.clamp(0, 1)
    fig, ax = plt.subplots(figsize=(size * n + 1.3, size * len(rows) + (0.35 if col_titles else 0.1)))
    ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks([r * (H + gap) + H / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=8)
    if col_titles:
        ax.set_xticks([j * (W + gap) + W / 2 for j in range(len(col_titles))], list(col_titles), fontsize=7)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    fig.tight_layout(pad=0.2)
    return fig


def pair_figure(decoder, mean, std, pair, names, base_model, rr_model, real_images: dict, real_features: dict, *,
                n: int = 6, seed: int = 0, amplification: float = 5.0):
    """Exaggerated reconstructions for one competing pair (a, b). Per class: n real test images and the
    decoded mean of the class's real features; then the decoded replay of the baseline and of RR+RA
    (same eps, so column j is the same latent draw in both) with the decoded mean of 512 replayed
    vectors in the last column; then the amplified difference RR+RA - baseline.
    real_images: {class: uint8 (m, 3, 32, 32)}; real_features: {class: (m, 1024)}.
    Returns (figure, {class: PSNR in dB between the two methods' decoded class means})."""
    rows, stats = [], {}
    for c in pair:
        fb, _ = replay_features(base_model, [c], n, seed)                                  # (n, D)
        fr, _ = replay_features(rr_model, [c], n, seed)
        mb = replay_features(base_model, [c], 512, seed + 1)[0].mean(0, keepdim=True)      # (1, D) class mean
        mr = replay_features(rr_model, [c], 512, seed + 1)[0].mean(0, keepdim=True)
        ib = decode_images(decoder, torch.cat([fb, mb]), mean, std)                        # (n + 1, 3, 32, 32)
        ir = decode_images(decoder, torch.cat([fr, mr]), mean, std)
        real_mean = decode_images(decoder, real_features[c].mean(0, keepdim=True), mean, std)
        real = torch.cat([real_images[c][:n].float() / 255, real_mean])
        rows += [(f"{names[c]}\nreal", real), (f"{names[c]}\nbaseline", ib), (f"{names[c]}\nRR+RA", ir),
                 (f"{names[c]}\ndiff x{amplification:g}", difference_map(ir, ib, amplification))]
        stats[c] = psnr(ir[-1], ib[-1])
    titles = [f"sample {j + 1}" for j in range(n)] + ["class mean"]
    return image_rows(rows, col_titles=titles), stats


def tsne_pair(feats: dict, names, pair, *, seed: int = 0, max_iter: int = 1000, ax_pair=None):
    """t-SNE (scikit-learn, PCA init, random_state=seed, as the reference's visualize_latent_space) of
    one competing pair: feats = {"real": (x, y), "baseline": (x, y), "RR+RA": (x, y)} with x (N, D),
    y (N,) class labels. One joint embedding, drawn in two panels (baseline, RR+RA) over the real
    features (faint crosses), so both panels share the axes. max_iter: t-SNE iterations (>= 250)."""
    from sklearn.manifold import TSNE
    plt = _plt()
    keys = list(feats)
    xs = torch.cat([feats[k][0] for k in keys]).numpy()
    n_pts = len(xs)
    emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (n_pts - 1) / 3),
               max_iter=max_iter).fit_transform(xs)
    parts, start = {}, 0
    for k in keys:
        m = len(feats[k][0])
        parts[k] = (emb[start:start + m], feats[k][1].numpy())
        start += m
    if ax_pair is None:
        fig, ax_pair = plt.subplots(1, 2, figsize=(7.5, 3.4), sharex=True, sharey=True)
    else:
        fig = ax_pair[0].figure
    colors = {pair[0]: "tab:blue", pair[1]: "tab:orange"}
    for ax, method in zip(ax_pair, [k for k in keys if k != "real"]):
        e, y = parts["real"]
        for c in pair:
            ax.scatter(*e[y == c].T, s=7, marker="x", color=colors[c], alpha=0.4, linewidths=0.7,
                       label=f"{names[c]} (real)")
        e, y = parts[method]
        for c in pair:
            ax.scatter(*e[y == c].T, s=8, color=colors[c], alpha=0.8, label=f"{names[c]} (replay)")
        ax.set_title(f"{method}: {names[pair[0]]} vs {names[pair[1]]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_pair[0].legend(fontsize=7, loc="best")
    return fig
