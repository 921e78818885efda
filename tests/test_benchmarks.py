"""benchmarks/: the flag validation's verdict, and the speed benchmark's reference pattern."""
import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _load(name, folder="benchmarks"):
    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


vf = _load("validate_flags")
speed = _load("speed")


def _runs(*values):
    return [dict(metrics=dict(first20=v, first50=v, overall=v)) for v in values]


def test_verdict_compares_the_paired_difference_with_the_seed_spread():
    s = vf.summarise(_runs(0.5, 0.6, 0.7), _runs(0.52, 0.58, 0.71))     # fp32 seed SD 0.1
    assert s["overall"]["fp32_seed_sd"] == pytest.approx(0.1)
    assert s["overall"]["mean_diff"] == pytest.approx(0.01 / 3)
    assert s["overall"]["within_seed_noise"] is True
    s = vf.summarise(_runs(0.50, 0.51, 0.52), _runs(0.40, 0.41, 0.42))  # SD 0.01, shifted by -0.10
    assert s["first20"]["mean_diff"] == pytest.approx(-0.10) and s["first20"]["within_seed_noise"] is False


def test_validate_flags_writes_its_summary(tmp_path):
    out = tmp_path / "flags.json"
    entry = vf.main(["--budget", "smoke", "--seeds", "0", "1", "--flags", "bf16", "--device", "cpu",
                     "--results-dir", str(tmp_path / "results"), "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved[-1]["flags"]["bf16"]["overall"]["fp32"] == entry["flags"]["bf16"]["overall"]["fp32"]
    assert saved[-1]["dataset"] == "synthetic" and saved[-1]["provenance"]["device"] == "cpu"
    bf16_runs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    assert sorted(r["config"]["bf16"] for r in bf16_runs) == [False, False, True, True]


@pytest.mark.slow       # about 22 s on a 2-core CPU: four smoke runs, two of them compiled
def test_validate_flags_checks_bf16_and_compile_together_apart_from_the_results(tmp_path):
    """bf16+compile (the GPU Table 1 candidate) shares the bf16 runs' stamps: it is trained in its own folder,
    never into the results, and summarised under its own name."""
    entry = vf.main(["--budget", "smoke", "--seeds", "0", "1", "--flags", "bf16+compile", "--device", "cpu",
                     "--results-dir", str(tmp_path / "results"), "--compile-dir", str(tmp_path / "compiled"),
                     "--out", str(tmp_path / "flags.json")])
    assert set(entry["flags"]) == {"bf16+compile"} and len(entry["flags"]["bf16+compile"]["overall"]["flagged"]) == 2
    stored = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    assert [r["config"]["bf16"] for r in stored] == [False, False]
    both = [json.loads(p.read_text()) for p in (tmp_path / "compiled" / "bf16+compile" / "runs").glob("*.json")]
    assert [(r["config"]["bf16"], r["config"]["compile"]) for r in both] == [(True, True)] * 2


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_reference_pattern_gates_are_birrs_bit_for_bit(bf16):
    """The reference pattern's decoder gates known classes by one-hot products (speed.one_hot_class_gate),
    birr by M's rows: a batch of labelled then soft-gated samples decodes to the same bits, also in the
    frozen copy a previous model is, fp32 and under bf16."""
    import copy
    from birr.model import BIR
    m = BIR([3], n_classes=6, fc_units=32, z_dim=4)
    g = torch.Generator().manual_seed(0)
    y, soft = torch.randint(0, 6, (1, 5), generator=g), torch.softmax(torch.randn(1, 3, 6, generator=g), -1)
    z = torch.randn(1, 8, 4, generator=g)
    ref = copy.deepcopy(m)
    ref.class_gate = speed.one_hot_class_gate
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), ctx:
        assert torch.equal(m.decode(z, soft, y), ref.decode(z, soft, y))
        assert torch.equal(m.decode(z[:, :5], y=y), copy.deepcopy(ref).decode(z[:, :5], y=y))


def test_reference_pattern_stack_gives_the_same_si_gradient_as_birr():
    """The benchmark's baseline only changes how SI and Adam are computed, not what: same gradient."""
    import birr
    from birr import train as T
    from birr.learner import Learner
    cfg = birr.preset("bir+si", budget="smoke", device="cpu")
    stacks = []
    for cls in (Learner, speed.ReferencePatternStack):
        data = T.TaskData(cfg, [0], torch.device("cpu"))
        st = cls([cfg], torch.device("cpu"), data=data)
        with torch.no_grad():
            for p in st.params.values():
                p.add_(0.01)
            for n in st.si.names:
                st.si.omega[n].fill_(2.0)
        st.si.refresh_scale()
        for p in st.params.values():
            p.grad = torch.zeros_like(p)
        st.si.add_grad(st.params)
        stacks.append(st)
    for n in stacks[0].params:
        assert torch.allclose(stacks[0].params[n].grad, stacks[1].params[n].grad, rtol=1e-5), n
    assert stacks[0].params["fcE1.weight"].grad.abs().sum() > 0


def test_status_page_tables_from_benchmark_files(tmp_path):
    es = _load("exec_stats", "scripts")
    res = tmp_path / "benchmarks" / "results"
    res.mkdir(parents=True)
    assert "No flag has been validated" in es.flags(tmp_path)
    prov = lambda sha: dict(device_name="GPU X", device="cuda", torch="2.x", threads=1, date="2026-11-25T00:00", git_sha=sha,
                            tf32=True)
    row = lambda K, t, c=False: dict(method="bir+si", batch=512, K=K, bf16=False, compile=c, s_per_iter=t,
                                     run_iters_per_s=K / t, table1_projection_min=1.0)
    # two entries of one code version (one GPU run) are merged; an older version is not shown
    # a later re-timing of a setting without the reference baseline does not hide the row with the speed-up
    (res / "speed.json").write_text(json.dumps([dict(provenance=prov("old"), rows=[row(1, 9.0)]),
                                                dict(provenance=prov("new"), rows=[dict(row(1, 0.5), speedup_vs_reference_pattern=3.0)]),
                                                dict(provenance=prov("new"), rows=[row(30, 2.0, True), row(1, 0.6)])]))
    table = es.speed(tmp_path)
    assert "| bir+si | 512 | 1 | fp32 (TF32 matmuls) | 0.5000 | 2.00 | 3.00x |" in table
    assert "| bir+si | 512 | 30 | fp32 (TF32 matmuls) + compile | 2.0000 |" in table
    assert "9.0000" not in table and "0.6000" not in table
    # a stack timed with its setup (building, warm-up, compile): the projection with and without it
    (res / "speed.json").write_text(json.dumps([dict(provenance=prov("new"), rows=[
        dict(row(30, 0.0139, True), table1_projection_min=11.58, setup_s=84.0, table1_with_setup_min=12.98)])]))
    assert "| 0.0139 | 2158.27 |  | 11.6 (13.0 with setup) |" in es.speed(tmp_path)
    s = vf.summarise(_runs(0.5, 0.6, 0.7), _runs(0.52, 0.58, 0.71))
    (res / "flags.json").write_text(json.dumps([dict(dataset="cifar10-jpg", budget="short", seeds=[0, 1, 2],
                                                     provenance=prov("new"), flags=dict(bf16=s))]))
    assert ("| bf16 | GPU X (2026-11-25, git new) | cifar10-jpg, short, 0 1 2 | overall | 60.0 % | 60.3 % | +0.33 | 10.00 "
            "| within seed noise |") in es.flags(tmp_path)
    # one CPU model name, two machines (with and without bf16 hardware): two tables, each saying which
    cpu = lambda isa, sha, threads=2: dict(prov(sha), device_name="AMD EPYC", device="cpu", threads=threads, tf32=False,
                                           **({"cpu_isa": isa} if isa else {}))
    (res / "speed.json").write_text(json.dumps([dict(provenance=cpu("AVX2", "a"), rows=[row(1, 0.4)]),
                                                dict(provenance=cpu("AVX512 + avx512_bf16", "b"), rows=[row(1, 0.15)])]))
    table = es.speed(tmp_path)
    assert "(cpu, AVX2," in table and "(cpu, AVX512 + avx512_bf16," in table
    # ... and so does the flags table (bf16 rounds differently with and without AMX): one row per ISA
    (res / "flags.json").write_text(json.dumps([dict(dataset="cifar10-jpg", budget="short", seeds=[0, 1, 2],
                                                     provenance=cpu(isa, "b"), flags=dict(bf16=s))
                                                for isa in ("AVX512 + avx512_bf16", "AVX512 + avx512_bf16 + amx_bf16")]))
    flag_rows = es.flags(tmp_path)
    assert "| bf16 | AMD EPYC, AVX512 + avx512_bf16 (2026-11-25, git b) |" in flag_rows
    assert "| bf16 | AMD EPYC, AVX512 + avx512_bf16 + amx_bf16 (2026-11-25, git b) |" in flag_rows
    assert "| 0.4000 |" in table and "| 0.1500 |" in table
    # each table's caption says how its ratios were timed: in one process (a CPU's are upper estimates)
    assert table.count("timed in one process, which on a CPU slowed the reference pattern") == 2
    # an entry from before the ISA was recorded is superseded by a later one for the same CPU model and
    # thread count that records it (one machine, one table); it still stands for another thread count,
    # and an unrecorded entry newer than every recorded one is shown
    (res / "speed.json").write_text(json.dumps([dict(provenance=cpu(None, "a"), rows=[row(1, 0.4)]),
                                                dict(provenance=cpu(None, "a", threads=1), rows=[row(1, 0.7)]),
                                                dict(provenance=cpu("AVX512 + avx512_bf16", "b"), rows=[row(1, 0.15)])]))
    table = es.speed(tmp_path)
    assert "| 0.4000 |" not in table and "| 0.1500 |" in table and "| 0.7000 |" in table
    assert table.count("vector ISA not recorded") == 1 and "not recorded, torch 2.x, 1 thread(s)" in table
    (res / "speed.json").write_text(json.dumps([dict(provenance=cpu("AVX512 + avx512_bf16", "b"), rows=[row(1, 0.15)]),
                                                dict(provenance=cpu(None, "c"), rows=[row(1, 0.4)])]))
    table = es.speed(tmp_path)
    assert "| 0.4000 |" in table and "| 0.1500 |" in table
    # fp32 on CUDA runs its matmuls in TF32 (birr.train.resolve_device): the label says so where recorded
    no_tf32_field = {k: v for k, v in prov("h").items() if k != "tf32"}
    (res / "speed.json").write_text(json.dumps([dict(provenance=prov("g"), rows=[row(1, 0.01)]),
                                                dict(provenance=dict(no_tf32_field, device_name="GPU Y"), rows=[row(1, 0.02)]),
                                                dict(provenance=cpu("AVX2", "a"), rows=[row(1, 0.4)])]))
    table = es.speed(tmp_path)
    gpu_x, rest = table.split("**GPU X**")[1].split("**GPU Y**")
    gpu_y, cpu_table = rest.split("**AMD EPYC**")
    assert "| fp32 (TF32 matmuls) | 0.0100 |" in gpu_x
    assert "| fp32 (TF32 not recorded) | 0.0200 |" in gpu_y
    assert "| fp32 | 0.4000 |" in cpu_table and "TF32" not in cpu_table
    # the projection is of the paper's Table 1, not of the book's Table 1 page
    assert "projects the paper's full Table 1 (30 runs, 6 rows x 5 seeds" in table
    # a comparison timed in rounds, each setting in its own process: the median ratio and its range
    iso = dict(row(1, 0.13), speedup_vs_reference_pattern=3.1, isolated_rounds=3, speedup_range=[2.9, 3.2])
    (res / "speed.json").write_text(json.dumps([dict(provenance=cpu("AVX512 + avx512_bf16", "c"), rows=[iso]),
                                                dict(provenance=prov("g"), rows=[row(1, 0.01)])]))
    table = es.speed(tmp_path)
    assert "| 0.1300 | 7.69 | 3.10x (2.90-3.20 in 3 rounds) |" in table
    assert "timed in rounds, each setting in its own process" in table.split("**GPU X**")[0]
    gpu = table.split("**GPU X**")[1]
    assert "all settings timed in one process)" in gpu and "rounds" not in gpu and "upper estimates" not in gpu


@pytest.mark.parametrize("how, rounds", [
    # about 26 s on a 2-core CPU: each setting timed in a process of its own
    pytest.param(["--rounds", "1"], 1, marks=pytest.mark.slow),
    (["--no-isolate"], 0)])
def test_speed_benchmark_records_interleaved_baseline_and_ratio(tmp_path, how, rounds):
    """The reference comparison, each setting in a process of its own (CPU default) or all in this one."""
    out = tmp_path / "speed.json"
    speed.main(["--device", "cpu", "--batches", "8", "--methods", "bir+si", "--stack", "1", "2",
                "--precision", "fp32", "bf16", "--warmup", "1", "--iters", "1", *how, "--out", str(out)])
    [entry] = json.loads(out.read_text())
    rows = {(r["method"], r["K"], r["bf16"]): r for r in entry["rows"]}
    assert set(rows) == {("reference-pattern", 1, False), ("bir+si", 1, False), ("bir+si", 1, True),
                         ("bir+si", 2, False), ("bir+si", 2, True)}                  # K=1 timed once per precision
    for bf16 in (False, True):   # both precisions interleaved with the (fp32) reference pattern
        one = rows[("bir+si", 1, bf16)]
        assert one["speedup_vs_reference_pattern"] == pytest.approx(   # (one round: its ratio)
            rows[("reference-pattern", 1, False)]["s_per_iter"] / one["s_per_iter"])
        assert one["isolated_rounds"] == rounds and one["speedup_range"] == [one["speedup_vs_reference_pattern"]] * 2
    two = rows[("bir+si", 2, False)]
    assert two["run_iters_per_s"] == pytest.approx(2 / two["s_per_iter"])
    # a stack's row also says what its setup cost, and Table 1 with it paid once per stack of 2 (15 stacks)
    assert two["setup_s"] > 0 and "setup_s" not in rows[("reference-pattern", 1, False)]
    assert two["table1_with_setup_min"] == pytest.approx(two["table1_projection_min"] + 15 * two["setup_s"] / 60)
    assert entry["provenance"]["device"] == "cpu" and entry["provenance"]["cpu_isa"]


def test_roofline_counts_the_step():
    """benchmarks/roofline.py: matmul FLOPs grow with the batch, Adam reads and writes 4 floats per parameter
    (its schema marks p, g, m, v as written), no weight gradient is summed from two passes, and the step
    never zero-fills gradients (zero_grad(set_to_none=True): the backward's gradient becomes .grad, bit for
    bit what 0 + g gave, without two passes over every parameter). The update's own count holds Adam and the
    SI bookkeeping, and the fused update (Config.compile) moves 28 bytes per parameter + 16 per SI one."""
    rl = _load("roofline")
    small, update, stack = rl.count_step("rr+ra", 16)
    large, _, _ = rl.count_step("rr+ra", 32)
    assert 1.9 < sum(large.flops.values()) / sum(small.flops.values()) < 2.1
    n = sum(p.numel() for p in stack.model.parameters())
    assert 32 * n <= small.bytes["aten._fused_adam_.default"] < 33 * n
    assert update.bytes["aten._fused_adam_.default"] == small.bytes["aten._fused_adam_.default"]
    assert set(update.bytes) < set(small.bytes) and sum(update.bytes.values()) < sum(small.bytes.values())
    n_si = sum(stack.params[name].numel() for name in stack.si.names)
    assert rl.fused_update_bytes(stack) == 28 * n + 16 * n_si < sum(update.bytes.values())
    assert not any("zero" in name or "fill" in name for name in small.bytes if small.bytes[name] > 4 * n / 2)
    # current and replayed samples share one forward pass: no weight gradient is the sum of two (an add
    # reading two and writing one parameter-sized tensor would be 12 bytes per parameter)
    assert small.bytes["aten.add.Tensor"] < 12 * n


def test_roofline_counts_no_casts_with_bf16_weight_copies():
    """bf16 + compile: with the linear layers' bf16 copies written by the update, the step outside
    the update no longer casts weights to bf16 (read 4 + write 2 bytes per parameter) nor their gradients
    back to fp32 (read 2 + write 4): 12 bytes fewer per linear-layer parameter than under plain autocast."""
    rl = _load("roofline")
    plain, plain_update, _ = rl.count_step("bir+si", 16, bf16=True)
    copies, copies_update, stack = rl.count_step("bir+si", 16, bf16=True, copies=True)
    n_lin = sum(stack.params[name].numel() for name in stack.low)
    assert n_lin > 0.99 * sum(p.numel() for p in stack.params.values())
    outside = lambda c, u: sum(c.bytes.values()) - sum(u.bytes.values())
    saved = outside(plain, plain_update) - outside(copies, copies_update)
    assert 11.9 * n_lin < saved < 12.1 * n_lin
    assert sum(plain.flops.values()) == sum(copies.flops.values())


def test_speed_phases_add_up_and_leave_nothing_patched():
    """benchmarks/speed.py --phases: every phase of a replay step takes time, the rest is what the phases
    leave of the step, and torch.Tensor.backward is torch's own again afterwards."""
    backward = torch.Tensor.backward
    ms = speed.phases("bir+si", 8, 1, False, torch.device("cpu"), iters=2)
    assert set(ms) == {"replay", "teacher", "forward", "backward", "update", "rest", "step"}
    assert all(ms[k] > 0 for k in ("replay", "teacher", "forward", "backward", "update"))
    assert sum(v for k, v in ms.items() if k != "step") == pytest.approx(ms["step"])
    assert torch.Tensor.backward is backward


si = _load("stack_isolation")


def test_stack_isolation_sees_a_run_whose_matmul_reads_another_runs_rows(monkeypatch):
    """The diagnostic's verdicts: birr's StackedLinear (one matmul call per run on a CPU, so bit for bit
    stacked or alone on every CPU, fp32 and bf16) shows no leakage; a layer that mixes a sliver of the
    other runs' inputs into each run's output (what a kernel reading across a tile's tail would do) is
    caught by both leak checks. (2000 -> 100 at batch 256, the toZ / head shape, is one where one
    batched call for the stack rounded by it on an AMX Xeon, in fp32 and bf16.)"""
    for (fan_in, fan_out, batch), bf16 in itertools.product([(64, 16, 8), (2000, 100, 256)], (False, True)):
        honest = si.check(fan_in, fan_out, batch=batch, bf16=bf16)
        assert honest == dict(alone_equals_stacked=True, max_rel_diff=0.0, nan_leaks=False, scale_leaks=False)
    real_forward = si.StackedLinear.forward

    def leaky(self, x):
        return real_forward(self, x) + 1e-3 * x.sum(0, keepdim=True).sum(-1, keepdim=True)

    monkeypatch.setattr(si.StackedLinear, "forward", leaky)
    leak = si.check(64, 16, batch=8, bf16=False)
    assert leak["nan_leaks"] and leak["scale_leaks"] and not leak["alone_equals_stacked"]


def test_stack_isolation_records_an_entry_with_its_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(si, "SHAPES", {"smoke": dict(batch=4, layers=[("toZ", 8, 4)])})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    out = tmp_path / "iso.json"
    si.main(["--sizes", "smoke", "--out", str(out)])
    si.main(["--sizes", "smoke", "--out", str(out)])
    history = json.loads(out.read_text())
    assert len(history) == 2 and [(r["call"], r["dtype"]) for r in history[0]["rows"]] == [
        ("batched", "fp32"), ("batched", "bf16"), ("birr", "fp32"), ("birr", "bf16")]
    assert history[0]["provenance"]["onednn"].startswith("v") and "cpu_isa" in history[0]["provenance"]
    assert history[0]["provenance"]["onednn_max_cpu_isa"] == "ALL"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")      # read at the call: the record says what oneDNN was told
    assert si.onednn_isa_cap() == "AVX2"


def test_status_page_stacking_table_from_the_isolation_checks(tmp_path):
    es = _load("exec_stats", "scripts")
    res = tmp_path / "benchmarks" / "results"
    res.mkdir(parents=True)
    assert "No stack-isolation check" in es.stacking(tmp_path)
    prov = lambda isa, sha: dict(device_name="Xeon", cpu_isa=isa, onednn="v3.12.0", threads=2, date="2026-12-04T00:00",
                                 git_sha=sha)
    row = lambda dtype, layer, same, rel, leak=False, **kw: dict(size="full", layer=layer, dtype=dtype, alone_equals_stacked=same,
                                                                max_rel_diff=rel, nan_leaks=leak, scale_leaks=False, **kw)
    (res / "stack_isolation.json").write_text(json.dumps([
        dict(provenance=prov("AMX", "old"), rows=[row("bf16", "toZ", True, 0.0)]),
        dict(provenance=prov("AMX", "new"), rows=[row("fp32", "toZ", True, 0.0), row("bf16", "toZ", False, 2e-3),
                                                  row("bf16", "fromZ", False, 4e-3, leak=True)]),
        dict(provenance=prov("AVX512", "b"), rows=[row("bf16", "toZ", True, 0.0)]),
        dict(provenance=dict(prov("AVX512", "c"), onednn_max_cpu_isa="AVX2"), rows=[row("bf16", "toZ", True, 0.0)]),
        dict(provenance=prov("AMX2", "d"), rows=[row("bf16", "toZ", False, 3e-4, call="batched"),
                                                 row("bf16", "toZ", True, 0.0, call="birr")])]))
    table = es.stacking(tmp_path)
    assert "git old" not in table and table.count("| Xeon, AMX (2026-12-04, git new) |") == 2
    assert "| Xeon, AVX512 (2026-12-04, git b) | v3.12.0, 2 |" in table        # oneDNN's kernels as the CPU has them
    assert "| Xeon, AVX512 (2026-12-04, git c) | v3.12.0 (capped at AVX2), 2 |" in table   # a lesser ISA's: a row of its own
    assert "| one for the stack | bf16 | 0 of 2 layer shapes | 4.0e-03 | full fromZ |" in table   # no call: batched
    assert "| v3.12.0, 2 | one for the stack | bf16 | 0 of 1 layer shapes | 3.0e-04 | no |" in table
    assert "| v3.12.0, 2 | birr's layer (one per run) | bf16 | 1 of 1 layer shapes | 0.0e+00 | no |" in table
    assert "| fp32 | 1 of 1 layer shapes | 0.0e+00 | no |" in table and "| Xeon, AVX512 (" in table
