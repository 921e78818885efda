"""scripts/gpu_session.py: what runs on a lent GPU, exercised on the CPU at the smoke budget."""
import importlib.util
import json
import tarfile
from pathlib import Path

import pytest

import birr

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_session", REPO / "scripts" / "gpu_session.py")
gs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gs)


def test_full_trains_every_book_run_packs_them_and_unpack_brings_them_home(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    out.mkdir()
    archive = gs.full(out, minutes=10, budget="smoke", dataset="synthetic", seeds=[0], device="cpu",
                      results=results)
    want = {c.stamp for c in birr.book_configs(budget="smoke", dataset="synthetic", seeds=(0,))}
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert {Path(n).stem for n in names if n.startswith("results/runs/")} == want
    assert manifest["finished"] is True and manifest["n_runs"] == len(want)
    assert any(n.startswith("artefacts/encoder-") for n in names)
    home = tmp_path / "home"
    (home / "benchmarks" / "results").mkdir(parents=True)
    (home / "benchmarks" / "results" / "speed.json").write_text(json.dumps([{"a": 1}]))
    (out / "speed.json").write_text(json.dumps([{"a": 1}, {"b": 2}]))   # as the device appends to it
    written = gs.unpack(out, repo=home)
    assert {Path(p).stem for p in (home / "results" / "runs").glob("*.json")} == want
    assert json.loads((home / "benchmarks" / "results" / "speed.json").read_text()) == [{"a": 1}, {"b": 2}]
    assert any("speed.json (+1 entries)" in w for w in written)


def test_full_stops_on_time_and_says_so(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    archive = gs.full(out, minutes=0.001, budget="smoke", dataset="synthetic", seeds=[0], device="cpu",
                      results=tmp_path / "results")
    with tarfile.open(archive) as tar:
        assert json.load(tar.extractfile("manifest.json"))["finished"] is False


def test_cuda_without_a_gpu_is_a_one_line_error(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert gs.main(["bench", "--out", "unused", "--device", "cuda"]) == 2
    assert "sees no GPU" in capsys.readouterr().err


@pytest.mark.slow       # about 3 minutes on a 2-core CPU: the benchmarks and every book run at smoke size
def test_all_runs_bench_then_the_book_runs_and_reports_each_part(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # 3000 s: the parts' shares of it (a third of what is left for the benchmark's three processes)
    # outlast a CPU shared with other work; the whole takes about 3 minutes either way
    done = gs.run_all(out, seconds=3000, device="cpu", budget="smoke", dataset="synthetic", seeds=[0], quick=True,
                      results=tmp_path / "results", compile_min_s=1e9)   # no time for compile: skipped
    assert isinstance(done["bench"], float) and isinstance(done["full"], float), done
    assert done["compile"].startswith("skipped:")                  # said, not reported as 0 s of work
    assert list(done) == ["compile", "bench", "stacking", "full"]  # the decisive figure first, the book runs last
    check = json.loads((out / "stacking.json").read_text())      # exact on a CPU (tests/test_stacked.py)
    assert done["stacking"] == "exact: True" and check["exact"] is True and len(check["runs"]) == 3
    assert {r["stacked_with"] for r in check["runs"]} == {3} and all(r["max_weight_diff"] == 0 for r in check["runs"])
    home = tmp_path / "home"
    assert "benchmarks/results/gpu/stacking.json" in gs.unpack(out, repo=home)
    assert json.loads((home / "benchmarks" / "results" / "gpu" / "stacking.json").read_text()) == check
    rows = json.loads((out / "speed.json").read_text())[-1]["rows"]
    assert {(r["method"], r["K"]) for r in rows} == {("bir+si", 1), ("bir+si", 2), ("rr+ra", 1), ("rr+ra", 2)}
    prof = (out / "profile.txt").read_text()                      # the largest stack's step, op by op
    assert prof.startswith("rr+ra batch 32 K 2 fp32") and "aten::bmm" in prof
    with tarfile.open(out / "results-smoke-synthetic.tar.gz") as tar:
        assert json.load(tar.extractfile("manifest.json"))["finished"] is True
    assert json.loads((out / "parts.json").read_text()) == done


def test_book_runs_table1_stack_first():
    cfgs = birr.book_configs(budget="smoke", dataset="synthetic", seeds=(0,))
    assert [c.method for c in cfgs[:2]] == ["bir+si", "rr+ra"] and cfgs[0].iters == max(c.iters for c in cfgs)


@pytest.mark.slow       # about 90 s on a 2-core CPU: a stack compiled twice
def test_compile_part_runs_the_compiled_stack_bf16_then_fp32(tmp_path):
    """The first part of `all` (the compiled 30-run stack whose bf16 figure decides Table 1 in 15 minutes),
    at toy size on the CPU: both precisions are timed compiled and appended to a copy of speed.json."""
    before = json.loads((REPO / "benchmarks" / "results" / "speed.json").read_text())
    target = gs.bench(tmp_path, "cpu", quick=True, part="compile")
    entries = json.loads(target.read_text())
    assert entries[:len(before)] == before and len(entries) == len(before) + 2
    rows = [r for e in entries[len(before):] for r in e["rows"]]
    assert [(r["method"], r["K"], r["bf16"], r["compile"]) for r in rows] == [("rr+ra", 2, True, True),
                                                                              ("rr+ra", 2, False, True)]
    assert all(r["s_per_iter"] > 0 for r in rows)
