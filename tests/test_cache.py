"""The face crop cache: built whole or not at all, independent of the working directory, pruned
by size but never while a run reads it."""

import os
from pathlib import Path

from smallnet_lit.data.cache import TEMP_MARK, CacheConfig
from smallnet_lit.data.ibug import IbugFaces


def test_killed_cache_build_leaves_no_half_cache_and_old_caches_are_pruned(ibug_root, tmp_path):
    cache_dir = tmp_path / "cache"
    stale = cache_dir / f"300w-all-0123{TEMP_MARK}999999.abc"  # pid 999999: not running
    stale.mkdir(parents=True)
    (stale / "faces.bin").write_bytes(bytes(100))
    IbugFaces(ibug_root, cache={"dir": str(cache_dir)})
    assert not stale.exists()
    first = [d for d in cache_dir.iterdir()]
    assert len(first) == 1 and (first[0] / "index.json").is_file()
    os.utime(first[0] / "index.json", (1, 1))  # long unused
    # its reader is gone: only a lease of a process that died is left (ignored)
    (first[0] / f"in-use.{os.getpid()}").rename(first[0] / "in-use.999999")
    # another cache, with a limit smaller than both: the older one goes, the new one stays
    IbugFaces(ibug_root, include=["afw/**"], cache=CacheConfig(dir=str(cache_dir), max_gb=1e-9))
    left = [d for d in cache_dir.iterdir()]
    assert len(left) == 1 and left[0] != first[0]


def test_cache_and_shared_data_do_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from smallnet_lit.training.config import config_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROJECT_ROOT", raising=False)
    monkeypatch.delenv("SMALLNET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=ibug300w"])
    GlobalHydra.instance().clear()
    assert (
        Path(cfg.data.root).resolve() == (Path(config_dir()).parent / ".." / "shared" / "data" / "300w-train").resolve()
    )
    assert cfg.data.cache.dir == str(tmp_path / "xdg" / "smallnet_lit" / "faces")


def test_pruning_never_deletes_a_cache_another_run_reads(ibug_root, tmp_path):
    """Run A reads its cache while run B, with a tiny data.cache.max_gb, builds another one."""
    import subprocess
    import sys

    cache_dir = tmp_path / "cache"
    reader = (
        "import sys\n"
        "from smallnet_lit.data.ibug import IbugFaces\n"
        f"faces = IbugFaces({str(ibug_root)!r}, cache={{'dir': {str(cache_dir)!r}}})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(sum(faces.load(i).image.size > 0 for i in range(len(faces))), flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    run_a = subprocess.Popen(
        [sys.executable, "-c", reader], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert run_a.stdout.readline().strip() == "ready"
        (cache_a,) = list(cache_dir.iterdir())
        os.utime(cache_a / "index.json", (1, 1))  # the least recently used one
        IbugFaces(ibug_root, include=["afw/**"], cache=CacheConfig(dir=str(cache_dir), max_gb=1e-9))
        assert cache_a.is_dir()  # in use by run A: kept though over the limit
        out, _ = run_a.communicate("go\n", timeout=60)
    finally:
        run_a.kill()
    assert run_a.returncode == 0 and int(out.split()[-1]) > 0


def test_the_cache_size_limit_is_a_config_key():
    from hydra import compose, initialize_config_dir

    from smallnet_lit.training.config import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+experiment=faces68", "data.cache.max_gb=5"])
    assert cfg.data.cache.max_gb == 5


def test_pruning_survives_files_that_vanish_while_it_counts(tmp_path, monkeypatch):
    """Runs beside this one exit (their leases go) while it sums the cache sizes: a listed
    file that is gone by its stat counts 0 instead of failing the run."""
    from smallnet_lit.data import cache

    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.json").write_text("{}")
        (tmp_path / name / "faces.bin").write_bytes(b"x" * 1000)
    listed = Path.iterdir

    def listed_then_gone(self):
        yield from listed(self)
        yield self / f"{cache.LEASE_MARK}999999"  # its run exited between listing and stat

    checked = Path.is_file
    monkeypatch.setattr(Path, "iterdir", listed_then_gone)
    monkeypatch.setattr(Path, "is_file", lambda self: self.name.endswith("999999") or checked(self))
    cache._prune(tmp_path, max_gb=1.5e-6, keep=tmp_path / "new")
    assert not (tmp_path / "old").exists() and (tmp_path / "new").is_dir()
    assert cache._lease_existing(tmp_path / "old") is False  # pruned: open_cache builds it again
