import pytest


@pytest.fixture
def birr_cache(tmp_path, monkeypatch):
    """Point birr's cache (BIRR_CACHE, see birr.data.cache_dir) at a fresh folder, so tests never touch ~/.cache."""
    path = tmp_path / "birr-cache"
    monkeypatch.setenv("BIRR_CACHE", str(path))
    return path


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
