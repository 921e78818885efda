"""
The reference's own pre-trained conv encoder, converted into a birr artefact (appendix §3, "The shipped
checkpoint").

The reference loads store/models/C3-5x16-bn unless told otherwise. Its 39,000 BN batches show it was not
made by the documented recipe (appendix §3), so birr.encoder.pretrain cannot reproduce it; a user who
has the file imports it once:
    python -m birr import-encoder path/to/C3-5x16-bn   ->  artefacts/encoder-ref-<sha>.pt
and runs with `--set encoder=ref-<sha>` (Config.encoder, read by birr.encoder.load_imported), for
features from the very weights the paper's numbers came from.
"""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import torch

from birr.data import CIFAR10_STATS
from birr import encoder as benc
from birr.encoder import FORMAT, ConvEncoder, _save_atomic


def _birr_key(ref_key: str) -> str | None:
    """The reference's `convLayer{i}.conv.*` / `convLayer{i}.bn.*` (appendix §3) -> this stack's
    `layers.{n}.*`: layer i's conv is module 3(i-1), its BN module 3(i-1)+1 (ReLU has no state); L5 is
    the bare conv, module 12. None for a key the reference stack cannot have."""
    m = re.fullmatch(r"convLayer([1-5])\.(conv|bn)\.(\w+)", ref_key)
    if m is None or (m[1] == "5" and m[2] == "bn"):
        return None
    return f"layers.{3 * (int(m[1]) - 1) + (m[2] == 'bn')}.{m[3]}"


def _reference_key(key: str) -> str:
    """The inverse of _birr_key: `layers.{n}.{leaf}` -> the reference's name for it."""
    _, n, leaf = key.split(".")
    return f"convLayer{int(n) // 3 + 1}.{'bn' if int(n) % 3 == 1 else 'conv'}.{leaf}"


def import_reference(path: str | Path, out_dir: str | Path | None = None) -> Path:
    """
    Convert the reference's conv-stack checkpoint (appendix §3: `torch.save({'state': state_dict})` with
    keys `convLayer{1..5}.conv.{weight,bias}` and `convLayer{1..4}.bn.{weight,bias,running_mean,
    running_var,num_batches_tracked}`; a bare state dict is accepted too) into a birr artefact,
    `encoder-ref-<sha1 of the file, 10 hex>.pt` in out_dir (default: artefacts/). Every key and shape
    is checked, so a checkpoint of another architecture is refused in one line instead of loading half.
    Returns the artefact's path; its name after "encoder-" is what Config.encoder takes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the reference ships it as store/models/C3-5x16-bn)")
    raw = path.read_bytes()
    sha1 = hashlib.sha1(raw).hexdigest()
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds here (pickle, zip, unsafe global); one line names it
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise ValueError(f"{path}: not a torch checkpoint of tensors ({type(e).__name__}: {first})") from None
    state = obj.get("state", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or {{'state': state dict}}), got {type(obj).__name__}")
    encoder = ConvEncoder()
    expected = encoder.state_dict()
    mapped, unknown = {}, []
    for key, value in state.items():
        ours = _birr_key(key)
        if ours is None or ours not in expected:
            unknown.append(key)
        elif value.shape != expected[ours].shape:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, the C3-5x16-bn stack needs {tuple(expected[ours].shape)}")
        else:
            mapped[ours] = value
    if unknown:
        raise ValueError(f"{path}: keys the C3-5x16-bn stack does not have: {', '.join(sorted(unknown)[:4])}"
                         f"{' ...' if len(unknown) > 4 else ''} (appendix §3)")
    missing = [k for k in expected if k not in mapped]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(_reference_key(k) for k in missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''} (appendix §3 lists the keys)")
    encoder.load_state_dict(mapped)
    name = f"ref-{sha1[:10]}"
    # the folder is read when called, as load_imported reads it, so both always mean the same one
    out = Path(out_dir if out_dir is not None else benc.ARTEFACTS) / f"encoder-{name}.pt"
    mean, std = CIFAR10_STATS
    _save_atomic(dict(
        format=FORMAT, stamp=name, dataset="cifar10", mean=list(mean), std=list(std),  # appendix §3: CIFAR-10 statistics
        # dataset / epochs as in a pretrain() recipe (birr.lens names the encoder by them); the
        # epochs that made the shipped file are unknown (appendix §3: not the documented 100 at batch 256)
        recipe=dict(source="reference checkpoint", file=path.name, file_sha1=sha1, dataset="cifar10", epochs=None),
        test_acc=None, train_seconds=None, history=[], torch=str(torch.__version__), device="cpu",
        state_dict={k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
    ), out)
    return out
