"""explain.runtime: the allocator tunables and the compilation cache, each applied in a fresh process.

Both change process-wide state (glibc's malloc, jax.config), so every effect is checked in a
subprocess and this test process is left as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from explain import chunking, runtime

ROOT = Path(__file__).resolve().parents[2]
# Linux with glibc, the platform the tunables are for (asked of the C library, not of explain.runtime)
ON_GLIBC = sys.platform == "linux" and "CS_GNU_LIBC_VERSION" in os.confstr_names
ON_GLIBC = ON_GLIBC and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")


def faults_code(size_mib: int, *, thread: bool) -> str:
    """Code that allocates, writes through (as XLA writes its work buffers) and frees a buffer of ``size_mib``
    nine times, in a new thread when ``thread``, and stores the minor page faults of the last eight in
    ``result["faults"]``."""
    code = f"""
import ctypes, resource, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def once():
    p = libc.malloc({size_mib} * 2**20); ctypes.memset(p, 1, {size_mib} * 2**20); libc.free(p)
def work():
    once()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        once()
    result["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""
    return code + ("t = threading.Thread(target=work); t.start(); t.join()\n" if thread else "work()\n")


# 64 MiB in the main thread: glibc's default mmaps and unmaps each one (16,384 fresh pages every time);
# tuned, the heap keeps the first.
FAULTS = faults_code(64, thread=False)
# 80 MiB in another thread: without the one-arena limit the thread gets an arena of its own, whose heaps
# hold at most 64 MiB, so each buffer is mmapped and faulted anew whatever the mmap threshold.
THREAD_FAULTS = faults_code(80, thread=True)


def run_python(code: str, **env: str) -> dict:
    """Runs ``code`` in a fresh interpreter (project importable) and returns its ``result`` dict."""
    clean = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "LD_PRELOAD")}
    clean = {k: v for k, v in clean.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "EXPLAIN_"))}
    script = f"import json, sys\nsys.path.insert(0, {str(ROOT)!r})\nresult = {{}}\n{code}\nprint(json.dumps(result))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**clean, **env}, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_malloc_settings_follow_the_environment():
    assert runtime.malloc_settings({runtime.MALLOC_ENV: "system"}) == {}
    assert runtime.malloc_settings({"MALLOC_MMAP_THRESHOLD_": "65536"}) == {}  # the user's own tuning wins
    assert runtime.malloc_settings({"LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}) == {}
    if ON_GLIBC:
        assert runtime.malloc_settings({}) == runtime.MALLOC_SETTINGS
        assert runtime.malloc_settings({runtime.MALLOC_ENV: "tuned"}) == runtime.MALLOC_SETTINGS
    else:
        assert runtime.malloc_settings({}) == {}
    with pytest.raises(ValueError, match="EXPLAIN_MALLOC must be 'tuned' or 'system', got 'tcmalloc'"):
        runtime.malloc_settings({runtime.MALLOC_ENV: "tcmalloc"})


def test_mmap_threshold_covers_a_compiled_calls_working_set():
    # A default-sized chunk's work buffers (at most MEMORY_BUDGET together) must stay below the threshold.
    assert runtime.MALLOC_SETTINGS["M_MMAP_THRESHOLD"] >= chunking.MEMORY_BUDGET


def test_tune_malloc_is_idempotent_and_keeps_large_buffers():
    code = (
        "from explain import runtime\nresult['first'] = runtime.tune_malloc()\nresult['again'] = runtime.tune_malloc()"
    )
    tuned = run_python(code + FAULTS)
    system = run_python(code + FAULTS, **{runtime.MALLOC_ENV: "system"})
    assert system["first"] == system["again"] == {}
    if ON_GLIBC:
        assert tuned["first"] == tuned["again"] == runtime.MALLOC_SETTINGS
        assert tuned["faults"] * 4 < system["faults"], (tuned, system)
    else:
        assert tuned["first"] == {}


def test_one_arena_keeps_the_buffers_other_threads_free():
    code = "from explain import runtime\nresult['tuned'] = runtime.tune_malloc()\n"
    tuned = run_python(code + THREAD_FAULTS)
    system = run_python(code + THREAD_FAULTS, **{runtime.MALLOC_ENV: "system"})
    if ON_GLIBC:
        assert tuned["tuned"]["M_ARENA_MAX"] == 1
        assert tuned["faults"] * 4 < system["faults"], (tuned, system)  # system: 8 x 20,480 fresh pages
    else:
        assert tuned["tuned"] == {}


def test_compilation_cache_off_from_the_environment_explicit_and_then_left_alone(tmp_path):
    folder, mine = tmp_path / "cache" / "jax", tmp_path / "mine"
    r = run_python(
        textwrap.dedent(f"""
        import os, jax, jax.numpy as jnp
        from explain import runtime
        result["off"] = runtime.enable_compilation_cache()  # $EXPLAIN_JAX_CACHE is ""
        result["config_off"] = jax.config.jax_compilation_cache_dir
        os.environ[runtime.CACHE_ENV] = {str(folder)!r}
        result["dirs"] = [str(runtime.enable_compilation_cache()), str(runtime.enable_compilation_cache())]
        result["config"] = jax.config.jax_compilation_cache_dir
        result["min_secs"] = jax.config.jax_persistent_cache_min_compile_time_secs
        jax.jit(lambda v: v * 2 + 1)(jnp.arange(3.0)).block_until_ready()  # compiles in far under a second
        result["entries"] = os.listdir(result["config"])
        result["mode"] = os.stat(result["config"]).st_mode & 0o777
        result["explicit"] = str(runtime.enable_compilation_cache({str(mine)!r}))
        result["configured"] = str(runtime.configure().cache_dir)  # jax has a folder already: kept
        """),
        **{runtime.CACHE_ENV: ""},
    )
    assert r["off"] is None and r["config_off"] is None
    assert r["dirs"] == [str(folder)] * 2 and r["config"] == str(folder)
    assert r["min_secs"] == 0.0
    assert r["entries"], "a small program was not written to the cache"
    assert r["mode"] == 0o700
    assert r["explicit"] == r["configured"] == str(mine)


def test_default_cache_dir_is_per_user():
    assert runtime.default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/flax-explain/jax")
    assert runtime.default_cache_dir({}) == Path.home() / ".cache" / "flax-explain" / "jax"


def test_allocator_env_gives_a_child_each_allocator():
    base = {"PATH": "/bin", "LD_PRELOAD": "libjemalloc.so.2 /opt/mine.so"}
    system = runtime.allocator_env("system", base)
    assert system == {"PATH": "/bin", "LD_PRELOAD": "/opt/mine.so", runtime.MALLOC_ENV: "system"}
    assert runtime.allocator_env("tuned", {"PATH": "/bin"}) == {"PATH": "/bin", runtime.MALLOC_ENV: "tuned"}
    assert runtime.malloc_settings(system) == {}
    with pytest.raises(ValueError, match="expected an allocator of system, tuned, tcmalloc, got 'jemalloc'"):
        runtime.allocator_env("jemalloc", base)
    assert runtime.preloaded_allocator(base) == "jemalloc"
    assert runtime.preloaded_allocator({"LD_PRELOAD": "/opt/mine.so"}) == ""


def test_tcmalloc_child_runs_with_it_preloaded_where_the_machine_has_it():
    lib = runtime.find_tcmalloc()
    if lib is None:  # .ci/run installs it; elsewhere the error must say how
        with pytest.raises(ValueError, match="apt-get install libtcmalloc-minimal4"):
            runtime.allocator_env("tcmalloc")
        return
    env = runtime.allocator_env("tcmalloc", {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert env["LD_PRELOAD"] == lib and runtime.malloc_settings(env) == {}
    code = "from explain import runtime\nresult['tuned'] = runtime.tune_malloc()\n"
    code += "result['maps'] = 'tcmalloc' in open('/proc/self/maps').read()"
    r = run_python(code, LD_PRELOAD=env["LD_PRELOAD"])
    assert r == {"tuned": {}, "maps": True}  # loaded, and glibc's tunables left alone


def test_use_allocator_tunes_this_process_or_restarts_it_under_tcmalloc(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom explain import runtime\n"
        "print(runtime.use_allocator(sys.argv[1], [__file__, *sys.argv[1:]]), 'tcmalloc' in open('/proc/self/maps').read())"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith(("MALLOC_", "GLIBC_"))}

    def run(allocator):
        out = subprocess.run([sys.executable, str(script), allocator], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert run("system") == ["glibc", "defaults", "False"]
    if ON_GLIBC:
        assert run("tuned")[-1] == "False" and "M_ARENA_MAX" in " ".join(run("tuned"))
    if runtime.find_tcmalloc() is not None:
        assert run("tcmalloc") == ["tcmalloc", "True"]  # restarted with it preloaded, glibc's tuning stood down
