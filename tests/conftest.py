import pytest


@pytest.fixture
def birr_cache(tmp_path, monkeypatch):
    """Point birr's cache (BIRR_CACHE, see birr.data.cache_dir) at a fresh folder, so tests never touch ~/.cache."""
    path = tmp_path / "birr-cache"
    monkeypatch.setenv("BIRR_CACHE", str(path))
    return path
