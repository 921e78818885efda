"""Tests of birr/reference_encoder.py: the reference's shipped checkpoint converted into a birr artefact
(appendix §3), checked key by key and shape by shape."""
import hashlib
import re

import pytest
import torch

from birr.encoder import ConvEncoder, init_, load_encoder, load_imported
from birr.features import encoder_hash
from birr.reference_encoder import import_reference


def _reference_state(seed: int = 3) -> tuple[ConvEncoder, dict]:
    """A random C3-5x16-bn stack and its state dict under the reference's key names (appendix §3), with
    non-trivial BN statistics and the shipped file's 39,000 tracked batches."""
    enc = ConvEncoder()
    gen = torch.Generator().manual_seed(seed)
    init_(enc, gen)
    for name, buf in enc.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
        else:
            buf.fill_(39000)
    ref = {}
    for i in range(4):
        for leaf, t in enc.layers[3 * i].state_dict().items():
            ref[f"convLayer{i + 1}.conv.{leaf}"] = t.clone()
        for leaf, t in enc.layers[3 * i + 1].state_dict().items():
            ref[f"convLayer{i + 1}.bn.{leaf}"] = t.clone()
    for leaf, t in enc.layers[12].state_dict().items():
        ref[f"convLayer5.conv.{leaf}"] = t.clone()
    return enc.eval(), ref


def test_import_reference_checkpoint_gives_the_same_encoder(tmp_path):
    enc, ref = _reference_state()
    assert len(ref) == 5 * 2 + 4 * 5  # the keys appendix §3 lists
    src = tmp_path / "C3-5x16-bn"
    torch.save({"state": ref}, src)  # what the reference's utils.save_checkpoint writes
    out = import_reference(src, tmp_path / "artefacts")
    sha1 = hashlib.sha1(src.read_bytes()).hexdigest()
    assert out.name == f"encoder-ref-{sha1[:10]}.pt"
    loaded, meta = load_imported(f"ref-{sha1[:10]}", out_dir=tmp_path / "artefacts")
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), enc(x))   # same weights, same BN running statistics, eval mode
    assert loaded.frozen and not loaded.training
    assert int(loaded.layers[1].num_batches_tracked) == 39000
    assert meta["recipe"] == dict(source="reference checkpoint", file="C3-5x16-bn", file_sha1=sha1, dataset="cifar10", epochs=None)
    assert meta["mean"] == [0.4914, 0.4822, 0.4465]   # pre-trained under CIFAR-10 statistics (appendix §3)
    # a bare state dict is read too, and gives the same weights
    torch.save(ref, tmp_path / "bare")
    bare, _ = load_encoder(import_reference(tmp_path / "bare", tmp_path / "artefacts"))
    assert encoder_hash(bare) == encoder_hash(loaded)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("convLayer3.bn.running_var"), "missing convLayer3.bn.running_var"),
    (lambda r: r.__setitem__("convLayer5.bn.weight", torch.ones(256)), "does not have: convLayer5.bn.weight"),
    (lambda r: r.__setitem__("convLayer2.conv.weight", torch.zeros(32, 16, 5, 5)),
     "convLayer2.conv.weight has shape (32, 16, 5, 5), the C3-5x16-bn stack needs (32, 16, 3, 3)"),
])
def test_import_reference_refuses_other_stacks(tmp_path, edit, message):
    _, ref = _reference_state()
    edit(ref)
    torch.save({"state": ref}, tmp_path / "ckpt")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        import_reference(tmp_path / "ckpt", tmp_path / "artefacts")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "artefacts").exists() or not list((tmp_path / "artefacts").iterdir())  # nothing written


def test_import_reference_bad_files(tmp_path):
    (tmp_path / "text").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a torch checkpoint of tensors"):
        import_reference(tmp_path / "text", tmp_path)
    torch.save([torch.zeros(1)], tmp_path / "list")
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        import_reference(tmp_path / "list", tmp_path)
    with pytest.raises(FileNotFoundError, match="C3-5x16-bn"):
        import_reference(tmp_path / "absent", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m birr import-encoder"):
        load_imported("ref-0123456789", out_dir=tmp_path)
    with pytest.raises(ValueError, match="'ref-' and 10 hex digits"):
        load_imported("C3-5x16-bn", out_dir=tmp_path)
