"""The command line (birr/__main__.py, `python -m birr`): options and --set, the one `error:` line and exit
status 2 that a mistake, a damaged file, a full disk or a diverging run ends in, the summary lines, and
interruption (SIGINT, SIGTERM, SIGKILL during training; the same command then resumes). In-process through
main() where that shows it, in a subprocess where a real signal or a clean stderr is the point."""
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import birr
from birr import store
from birr import train as T
from birr.__main__ import interrupted_line, main


# --- options, --set and their mistakes ----------------------------------------------------------------------

def test_cli_set_parses_bools_like_its_message_says():
    """parse_set's bools accept true/false/1/0 (case-insensitive), the four its error message allows."""
    from birr.__main__ import parse_set
    assert parse_set(["bf16=1", "compile=0", "rr=TRUE", "ra=False"]) == dict(bf16=True, compile=False, rr=True, ra=False)


def test_cli_set_none_only_where_a_field_may_be_none(capsys):
    from birr.__main__ import parse_set
    assert parse_set(["replay=none", "rep_f=none", "encoder=None"]) == dict(replay="none", rep_f=None, encoder=None)
    assert main(["train", "--method", "bir+si", "--set", "replay=none", "--set", "si_c=1e8", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["replay"] == "none"   # SI alone, no replay


def test_cli_print_config_and_bad_set(capsys):
    assert main(["train", "--budget", "smoke", "--seeds", "0", "1", "--set", "rep_f=none", "--print-config"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["seed"] == 1
    assert main(["train", "--set", "rep_f=0.5", "--print-config"]) == 2
    assert "config.rep_f=0.5 must be >= 1" in capsys.readouterr().err


def test_cli_defaults_are_those_of_the_python_functions(capsys):
    """__main__.DEFAULTS: each command's defaults are those of the function it calls: table1_configs(budget=
    "full", seeds=(0, 1, 2, 3, 4)), 6 runs per seed (baseline + 5 f) = 30; book_configs(budget="short",
    seeds=(0, 1, 2)). Catches table1 defaulting to 3 seeds."""
    assert main(["table1", "--print-config"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 30 and {r["seed"] for r in rows} == {0, 1, 2, 3, 4} and {r["budget"] for r in rows} == {"full"}
    assert main(["book", "--print-config"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert {r["seed"] for r in rows} == {0, 1, 2} and {r["budget"] for r in rows} == {"short"}


@pytest.mark.parametrize("argv, message", [
    (["train", "--set", "nope=1"], "--set 'nope': Unknown config key"),
    (["train", "--set", "rep_f=abc"], "--set rep_f='abc': expected a number"),
    (["train", "--set", "iters=1.5"], "--set iters='1.5': expected an integer"),
    (["train", "--set", "seed=5"], "`train` sets seed itself; use --seeds"),
    (["table1", "--set", "rep_f=5"], "`table1` sets rep_f itself; use (the command sweeps f)"),
    (["book", "--set", "iters=100"], "`book` sets iters itself"),
    (["train", "--set", "device=cuda:x"], "config.device='cuda:x' is not allowed"),
    (["train", "--set", "lr=nan"], "config.lr=nan must be a finite number"),
    (["train", "--set", "lambda_rr=-1e-6"], "must be >= 0"),
    (["train", "--seeds", "99999999999"], "config.seed=99999999999 must be in 0..4294967295"),
    (["train", "--set", "n_train_per_class=0"], "config.n_train_per_class=0 must be >= 1"),
    (["train", "--set", "encoder=ref-0000000000"], "encoder 'ref-0000000000': no "),
    (["import-encoder", "no/such/C3-5x16-bn"], "no/such/C3-5x16-bn: no such file"),
])
def test_cli_mistakes_end_in_one_error_line(argv, message, tmp_path, capsys):
    """A user's mistake, found while building the configs or at the start of training, is one
    `error:` line on stderr and exit status 2, never a traceback; nothing is written."""
    assert main(argv + (["--results-dir", str(tmp_path / "res"), "--quiet"] if argv[0] != "import-encoder" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "res" / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--budget", "tiny"], "argument --budget: invalid choice: 'tiny' (choose from"),
    (["train", "--method", "rr"], "argument --method: invalid choice: 'rr'"),
    (["train", "--seeds", "x"], "argument --seeds: invalid int value: 'x'"),
    (["trian"], "invalid choice: 'trian'"),
    (["train", "--nope"], "unrecognized arguments: --nope"),
])
def test_cli_bad_options_end_in_one_error_line(argv, message, capsys):
    """argparse's own mistakes (an invalid choice, a bad type, an unknown option) are one `error:` line
    and exit status 2 too, without the usage block argparse prints by default."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "--help" in err, err


def test_cli_train_names_its_own_method_option(tmp_path, capsys):
    """SETS: `train` sets the method itself, so --set method=... is refused naming --method."""
    assert main(["train", "--set", "method=bir", "--results-dir", str(tmp_path), "--quiet"]) == 2
    assert "`train` sets method itself; use --method" in capsys.readouterr().err


@pytest.mark.slow       # about 20 s on a 2-core CPU: a subprocess imports birr and writes 600 configs
def test_cli_repeated_seeds_and_a_closed_pipe(capsys):
    """`train --seeds 0 0` is refused as table1 refuses it; `--print-config | head -1` is not an error."""
    assert main(["train", "--seeds", "0", "0", "--print-config"]) == 2
    assert "repeats a value" in capsys.readouterr().err
    p = subprocess.Popen([sys.executable, "-m", "birr", "table1", "--budget", "smoke", "--print-config",
                          "--seeds", *map(str, range(100))], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(p.stdout.readline())["seed"] == 0
    p.stdout.close()                                   # 600 lines: far more than a pipe's buffer
    assert p.wait(timeout=60) == 0 and p.stderr.read() == b""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_cuda_asked_for_on_a_cpu_machine_is_one_line(capsys, tmp_path):
    with pytest.raises(ValueError, match="device='cuda' but this torch sees no CUDA GPU; use 'auto' or 'cpu'"):
        T.resolve_device("cuda")
    assert main(["train", "--set", "device=cuda", "--results-dir", str(tmp_path), "--quiet"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err


# --- training from the command line -------------------------------------------------------------------------

def test_cli_summary_line_names_f_variant_and_iterations(tmp_path, capsys):
    """table1 and book print many rr+ra lines; each says which run it is."""
    argv = ["train", "--method", "rr+ra", "--set", "rep_f=10", "--set", "rr_variant=paper", "--set", "iters=5",
            "--results-dir", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert " rr+ra f=10 paper synthetic/smoke iters=5 seed=0 first20=" in line, line
    assert main(["train", "--set", "iters=5", "--results-dir", str(tmp_path), "--quiet"]) == 0
    assert " bir+si synthetic/smoke iters=5 seed=0 " in capsys.readouterr().out


def test_cli_uses_the_api_results_store_and_says_stored(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIRR_RESULTS", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--set", "iters=5", "--set", "device=cpu", "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out.strip()
    assert "(trained in" in first and not (tmp_path / "results").exists()
    assert len(list((tmp_path / "store" / "runs").glob("*.json"))) == 1
    assert main(argv) == 0
    assert "(stored, trained in" in capsys.readouterr().out
    (tmp_path / "file").write_text("")
    assert main(argv + ["--results-dir", str(tmp_path / "file"), "--force"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_cli_force_says_trained_and_no_checkpoint_writes_no_state(tmp_path, capsys):
    """--no-checkpoint: "no per-task state in results/ckpt/", so that folder is never made; --force re-trains,
    so its line says "(trained in", not "(stored, trained in". Catches the CLI passing checkpoint=True always
    and marking forced re-runs as stored."""
    res = tmp_path / "res"
    argv = ["train", "--set", "iters=3", "--set", "device=cpu", "--results-dir", str(res), "--quiet"]
    assert main(argv + ["--no-checkpoint"]) == 0
    assert "(trained in" in capsys.readouterr().out and not (res / "ckpt").exists()
    assert main(argv + ["--force", "--no-checkpoint"]) == 0
    out = capsys.readouterr().out
    assert "(trained in" in out and "stored" not in out


def test_run_with_an_imported_reference_encoder(results, tmp_path, monkeypatch, capsys, tiny):
    """appendix §3: `python -m birr import-encoder` turns the reference's checkpoint into an artefact, and a
    run with `encoder=ref-...` takes its features from those weights (recorded in the results file)."""
    from birr import encoder as benc
    # one folder for every artefact: the import writes where the encoder module says, read when called
    monkeypatch.setattr(benc, "ARTEFACTS", tmp_path / "artefacts")
    monkeypatch.setenv("BIRR_CACHE", str(tmp_path / "cache"))
    enc = benc.ConvEncoder()
    benc.init_(enc, torch.Generator().manual_seed(5))
    names = {f"layers.{3 * i + j}": f"convLayer{i + 1}.{'bn' if j else 'conv'}" for i in range(4) for j in (0, 1)}
    names["layers.12"] = "convLayer5.conv"
    ref = {names[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in enc.state_dict().items()}
    torch.save({"state": ref}, tmp_path / "C3-5x16-bn")
    assert main(["import-encoder", str(tmp_path / "C3-5x16-bn")]) == 0
    name = capsys.readouterr().out.split()[0]
    assert name.startswith("ref-") and (tmp_path / "artefacts" / f"encoder-{name}.pt").is_file()
    cfg = tiny(iters=5, encoder=name)
    r = birr.run(cfg, results_dir=results, progress=False)
    assert r["encoder"]["recipe"]["source"] == "reference checkpoint" and r["encoder"]["stamp"] == name
    assert r["stamp"] == cfg.stamp != tiny(iters=5).stamp
    with pytest.raises(FileNotFoundError, match="import-encoder"):
        birr.run(tiny(iters=5, encoder="ref-0000000000"), results_dir=results, progress=False)
    assert main(["import-encoder", str(tmp_path / "absent")]) == 2
    assert "no such file" in capsys.readouterr().err


# --- damaged files, a full disk, a read-only folder: one line each ------------------------------------------

def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(results, monkeypatch, capsys, tiny, one_line,
                                                                    stored, birr_cache):
    cfg = tiny(seed=1)
    birr.run(cfg, results_dir=results, progress=False)     # the features cache exists: the run's first write is its state

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store.os, "fsync", full)
    argv = ["train", "--set", "iters=20", "--set", "log_every=5", "--set", "device=cpu", "--results-dir", str(results),
            "--quiet"]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert re.fullmatch(r"error: cannot write \S+/ckpt/run-\w+\.pt: No space left on device", err), err
    assert stored(results) == [f"{cfg.stamp}.json", f"{cfg.stamp}.pt", f"{cfg.stamp}.pt.sha256"]   # only seed 1's
    assert not list(results.rglob(".*.tmp")) and not list((results / "ckpt").iterdir())


def test_a_read_only_folder_is_one_line_naming_it(tmp_path, capsys, one_line):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        try:
            (folder / "probe").write_text("")
        except PermissionError:
            pass
        else:
            pytest.skip("this user (root) can write into a read-only folder")
        with pytest.raises(OSError, match=f"^cannot write {re.escape(str(folder))}/m.pt: Permission denied$"):
            T.atomic_torch_save(folder / "m.pt", {"w": torch.ones(1)})
        assert main(["train", "--set", "iters=5", "--results-dir", str(folder / "res"), "--quiet"]) == 2
        err = one_line(capsys.readouterr().err)
        assert err.startswith(f"error: results_dir='{folder}/res' cannot be written (Permission denied)"), err
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("damage", ["number", "empty", "truncate"])
def test_a_damaged_results_file_is_refused_in_one_line_and_force_replaces_it(results, damage, capsys, tiny,
                                                                             one_line, truncate, birr_cache):
    cfg = tiny()
    first = birr.run(cfg, results_dir=results, progress=False)
    path = T.results_path(results, cfg)
    text = path.read_text()
    assert json.loads(text)["sha256"] == store.json_digest(json.loads(text))
    if damage == "number":   # still valid JSON, one accuracy changed: only the hash can tell
        i = text.index('"per_class_acc": [') + len('"per_class_acc": [')
        i += re.search(r"\d", text[i:]).start()
        path.write_text(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])
        message = "does not match the sha256 recorded in it"
    elif damage == "empty":
        path.write_text("")
        message = "is not a readable birr result"
    else:
        truncate(path)
        message = "is not a readable birr result"
    with pytest.raises(ValueError, match=message) as info:
        birr.load_result(results, cfg)
    assert str(path) in one_line(str(info.value)) and "force=True" in str(info.value)
    argv = ["train", "--set", "iters=20", "--set", "log_every=5", "--set", "device=cpu", "--results-dir", str(results),
            "--quiet"]
    assert main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {path}") and message in err, err
    assert main(argv + ["--force"]) == 0
    assert birr.load_result(results, cfg)["acc_matrix"] == first["acc_matrix"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "pickle"])
def test_a_damaged_checkpoint_is_one_error_line_and_stores_nothing(results, damage, capsys, tiny, one_line, flip,
                                                                   truncate, stored, kill_in_task_2, birr_cache):
    cfg = tiny()
    ckpt = kill_in_task_2(cfg, results)
    if damage == "flip":
        flip(ckpt)
    elif damage == "truncate":
        truncate(ckpt)
    elif damage == "empty":
        ckpt.write_bytes(b"")
    else:
        store.sidecar(ckpt).unlink()
        ckpt.write_bytes(b"\x80\x04\x95garbage")
    argv = ["train", "--set", "iters=20", "--set", "log_every=5", "--set", "device=cpu", "--results-dir", str(results),
            "--quiet"]
    if damage == "pickle":    # in a process of its own: nothing but the one line reaches stderr (no warning)
        p = subprocess.run([sys.executable, "-m", "birr", *argv], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert p.returncode == 2 and p.stdout == ""
        err = one_line(p.stderr)
    else:
        assert main(argv) == 2
        err = one_line(capsys.readouterr().err)
    assert err.startswith(f"error: checkpoint {ckpt} cannot be resumed from (") and "force=True (--force)" in err, err
    if damage == "flip":
        assert "does not match its sha256" in err
    assert stored(results) == [] and ckpt.exists()             # not deleted unasked
    assert main(argv + ["--force"]) == 0                        # --force starts again
    assert "force: discarding checkpoint" in capsys.readouterr().err
    assert len(stored(results)) == 3 and not list((results / "ckpt").iterdir())


# --- divergence and interruption ----------------------------------------------------------------------------

def test_a_diverging_run_stops_with_one_line_and_stores_nothing(tmp_path, birr_cache, one_line, stored):
    """The smoke run at lr=1000 is NaN from its first logged iteration; it used to exit 0, print
    first20=1.0000 (argmax of NaN logits) and be stored."""
    env = dict(os.environ, OMP_NUM_THREADS="1", BIRR_CACHE=str(birr_cache))
    res = tmp_path / "res"
    p = subprocess.run([sys.executable, "-m", "birr", "train", "--budget", "smoke", "--set", "lr=1000", "--set", "device=cpu",
                        "--results-dir", str(res), "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    cfg = birr.preset("bir+si", budget="smoke", lr=1000.0, device="cpu")
    assert p.returncode == 2, p.stdout + p.stderr
    assert one_line(p.stderr) == (f"error: run {cfg.stamp} (seed 0, lr=1000) diverged in task 1: loss terms recon, kl, ce "
                                  f"are nan at iteration {cfg.log_every} (the first logged one that is not finite); "
                                  f"training stopped, nothing is stored for it")
    assert p.stdout == ""                                                    # no summary line (first20=...)
    assert stored(res) == [] and not list(res.rglob("*.pt"))                 # no result, model or checkpoint


def test_the_interrupted_line_when_nothing_is_checkpointed():
    e = KeyboardInterrupt()
    e.birr_checkpoint = None
    assert interrupted_line(e, checkpoint=False) == ("interrupted (Ctrl-C): nothing is checkpointed (--no-checkpoint); "
                                                     "run the same command again to train it from task 1")
    assert "no task had finished" in interrupted_line(e, checkpoint=True)
    assert "no run was training" in interrupted_line(KeyboardInterrupt(), checkpoint=True)


@pytest.mark.parametrize("sig, code, how", [
    # about 22 s on a 2-core CPU: the interrupted run, then the same command resuming it
    pytest.param(signal.SIGINT, 130, r"interrupted \(Ctrl-C\)", marks=pytest.mark.slow),
    (signal.SIGTERM, 143, "SIGTERM")])
def test_sigint_and_sigterm_say_what_is_checkpointed_and_how_to_resume(tmp_path, birr_cache, sig, code, how,
                                                                       one_line):
    argv = [sys.executable, "-m", "birr", "train", "--set", "iters=400", "--set", "device=cpu", "--results-dir",
            str(tmp_path), "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", BIRR_CACHE=str(birr_cache))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.time() + 300
    while not list((tmp_path / "ckpt").glob("*.pt.sha256")):      # task 1 is checkpointed
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert not (tmp_path / "runs").exists(), "the run finished before the signal: make task 2 longer"
    (ckpt,) = (tmp_path / "ckpt").glob("*.pt")
    assert re.fullmatch(f"{how}: the run is checkpointed after task 1 in {re.escape(str(ckpt))}; run the same command "
                        f"again to resume from task 2", one_line(err)), err
    assert store.verify(ckpt) and not list(tmp_path.rglob(".*.tmp"))
    if sig == signal.SIGINT:                                        # and the same command resumes it
        again = subprocess.run(argv[:-1], env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "resuming 1 run(s) after task 1" in again.stdout, again.stderr


@pytest.mark.slow       # about 40 s on a 2-core CPU: three runs of the command, one killed
def test_sigkilled_cli_run_resumes_from_its_last_task(tmp_path):
    """The brief's standard, with a real SIGKILL (no Python cleanup at all, unlike the KeyboardInterrupt
    above): `python -m birr train` killed during task 2 leaves task 1's checkpoint and no results file;
    the same command again resumes after task 1 and writes results equal to an uninterrupted run's."""
    argv = [sys.executable, "-m", "birr", "train", "--method", "rr+ra", "--set", "rep_f=5", "--set", "iters=400",
            "--set", "device=cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(argv + ["--results-dir", str(killed), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((killed / "ckpt").glob("*.pt")):          # task 1 done: its state is on disk
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "runs").exists(), "the run finished before it was killed: make task 2 longer"
    again = subprocess.run(argv + ["--results-dir", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming 1 run(s) after task 1" in again.stdout, again.stdout + again.stderr
    subprocess.run(argv + ["--results-dir", str(clean), "--quiet", "--no-checkpoint"], env=env, check=True,
                   capture_output=True, timeout=300)
    (a,), (b,) = (list((d / "runs").glob("*.json")) for d in (killed, clean))
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for key in ("acc_matrix", "per_class_acc", "loss_traces", "rr_stats", "metrics"):
        assert ra[key] == rb[key], key
    assert not list((killed / "ckpt").glob("*")) and not list(killed.rglob(".*tmp*"))
