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
    path = tmp_path_factory.mktemp("birr-results")
    old = os.environ.get("BIRR_RESULTS")
    os.environ["BIRR_RESULTS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BIRR_RESULTS", None)
    else:
        os.environ["BIRR_RESULTS"] = old
