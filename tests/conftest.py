import pytest


@pytest.fixture
def birr_cache(tmp_path, monkeypatch):
    """Point birr's cache (BIRR_CACHE, see birr.data.cache_dir) at a fresh folder, so tests never touch ~/.cache."""
    path = tmp_path / "birr-cache"
    monkeypatch.setenv("BIRR_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_encoder_recipe():
    """The smallest encoder pre-training that still runs every step: 96 synthetic images, one epoch, 3 steps."""
    return dict(dataset="synthetic", epochs=1, seed=0, batch=32, n_train_per_class=24, progress=False)


@pytest.fixture(scope="session")
def encoder_artefact(tmp_path_factory, tiny_encoder_recipe):
    """One smoke encoder pre-trained per test run, shared (read only) by every test that loads an artefact."""
    from birr.encoder import pretrain
    return pretrain(**tiny_encoder_recipe, out_dir=tmp_path_factory.mktemp("encoder-artefacts"))


@pytest.fixture(autouse=True, scope="session")
def _results_in_tmp(tmp_path_factory):
    """Runs trained by tests (and by notebooks papermill executes from tests, which inherit the
    environment) go to a temp folder, never into the repository's committed results/."""
    import os
    import torch
    # one thread: on a shared 2-core machine two-thread OpenMP under contention runs ~7x slower, and the
    # smoke models are too small to gain from a second thread; papermill kernels inherit the variable
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("birr-results")
    old = os.environ.get("BIRR_RESULTS")
    os.environ["BIRR_RESULTS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BIRR_RESULTS", None)
    else:
        os.environ["BIRR_RESULTS"] = old


# --- tiny training runs, shared by the files that train (train, learner, results, store, cli, ...) --------

@pytest.fixture(scope="session")
def tiny():
    """tiny(method="bir+si", **overrides): a smoke-budget config on the CPU, 20 iterations per task, a
    loss logged every 5: a synthetic run of two tasks that trains in about a second."""
    import birr

    def make(method="bir+si", **kw):
        base = dict(budget="smoke", device="cpu", iters=20, log_every=5)
        base.update(kw)
        return birr.preset(method, **base)
    return make


@pytest.fixture
def results(tmp_path):
    """A results folder of this test's own (not created: birr makes it on the first write)."""
    return tmp_path / "results"


@pytest.fixture
def kill_after(monkeypatch):
    """kill_after(cfgs, results, task): train `cfgs` as one stack and stop it as Ctrl-C would in the
    evaluation that ends task + 1, so the state after `task` is left in results/ckpt. Returns the
    KeyboardInterrupt (its birr_checkpoint is what the command line reports)."""
    import birr
    from birr import train as T

    def kill(cfgs, results, task: int) -> KeyboardInterrupt:
        real, n = T.evaluate, []

        def dies(*a, **k):
            n.append(1)
            if len(n) == task + 1:
                raise KeyboardInterrupt("killed")
            return real(*a, **k)

        monkeypatch.setattr(T, "evaluate", dies)
        with pytest.raises(KeyboardInterrupt) as info:
            birr.run_many(cfgs, results_dir=results, progress=False)
        monkeypatch.setattr(T, "evaluate", real)
        assert not (results / "runs").exists()
        return info.value
    return kill


@pytest.fixture
def kill_in_task_2(kill_after):
    """kill_in_task_2(cfg, results): train one run until task 2's evaluation, then stop it as Ctrl-C
    would; returns task 1's checkpoint file, the one the interrupt reports."""
    def kill(cfg, results):
        e = kill_after([cfg], results, task=1)
        (ckpt,) = (results / "ckpt").glob("*.pt")
        assert e.birr_checkpoint == (ckpt, 1)          # what the command line's message reports
        return ckpt
    return kill


@pytest.fixture
def end_task_snapshots(monkeypatch):
    """A list that gets a copy of the learner (its model, data, paper variant's class means) right after
    each end_task of the runs this test trains."""
    import copy
    import types
    from birr.learner import Learner
    snaps = []
    real = Learner.end_task

    def spy(self):
        real(self)
        snaps.append(types.SimpleNamespace(model=copy.deepcopy(self.model), data=self.data,
                                           paper_means=self.paper_means.clone()))
    monkeypatch.setattr(Learner, "end_task", spy)
    return snaps


@pytest.fixture(scope="session")
def stack_after_task_1():
    """stack_after_task_1(cfgs, steps=3): a Learner of `cfgs` that took `steps` steps on task 1's first
    batch and ended the task (SI's importances and the previous model are set)."""
    import torch
    from birr.learner import Learner

    def make(cfgs, steps=3):
        stack = Learner(cfgs, torch.device("cpu"))
        d = stack.data
        idx = d.task_indices(1)[:, :cfgs[0].batch]
        gens = stack.generators(1)
        stack.begin_task(1)
        for _ in range(steps):
            stack.step(1, d.train_x[idx], d.train_y.gather(1, idx), gens, None, None)
        stack.end_task()
        return stack
    return make


@pytest.fixture(scope="session")
def host_reads():
    """The class HostReads, a dispatch mode that records the ops that make a GPU wait: a value read back
    to the host (.item(), bool(), int()), and ops whose output size depends on the data (nonzero,
    boolean-mask indexing, masked_select). On the CPU they cost nothing, so tests name them instead
    of timing them: `with host_reads() as reads: ...`, then `reads.seen`."""
    import torch

    class HostReads(torch.utils._python_dispatch.TorchDispatchMode):
        NAMES = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
                 "aten.is_nonzero.default", "aten.unique_consecutive.default", "aten._unique2.default"}

        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func)
            if name in self.NAMES or (name == "aten.index.Tensor"
                                      and any(i is not None and i.dtype == torch.bool for i in args[1])):
                self.seen.append(name)
            return func(*args, **(kwargs or {}))
    return HostReads


# --- damaged files and one-line messages (the fault-injection tests of store, results, train, cli) ----

@pytest.fixture(scope="session")
def flip():
    """flip(path, at=0.5): flip every bit of one byte, `at` of the way into the file."""
    def flip(path, at: float = 0.5) -> None:
        blob = bytearray(path.read_bytes())
        blob[int(len(blob) * at)] ^= 0xFF
        path.write_bytes(bytes(blob))
    return flip


@pytest.fixture(scope="session")
def truncate():
    """truncate(path, keep=0.5): keep only the first `keep` of the file's bytes."""
    def truncate(path, keep: float = 0.5) -> None:
        path.write_bytes(path.read_bytes()[:int(path.stat().st_size * keep)])
    return truncate


@pytest.fixture(scope="session")
def one_line():
    """one_line(text): the text stripped, asserted to be one non-empty line."""
    def one_line(text: str) -> str:
        text = text.strip()
        assert text and "\n" not in text, text
        return text
    return one_line


@pytest.fixture(scope="session")
def stored():
    """stored(results): the names of every file under results/runs and results/models."""
    def stored(results) -> list[str]:
        return sorted(p.name for sub in ("runs", "models") if (results / sub).is_dir() for p in (results / sub).iterdir())
    return stored
