"""Process settings every entry point applies once: the C allocator's tunables and JAX's compilation cache.

The command line, the dashboard and the HTTP service each call :func:`configure` before
their first JAX computation; library code never does (a library must not change its host
process's allocator or write caches in the user's home behind their back).

* :func:`tune_malloc`: glibc's ``malloc`` serves every buffer above its mmap threshold
  (128 KiB, rising with use to at most 32 MiB) with a fresh ``mmap`` and gives it back
  with ``munmap`` on ``free``. XLA on CPU allocates a compiled call's work buffers on
  every call, so each call paid the kernel for zeroing those pages anew: about 9,000
  page faults (35 MiB) per gradient of ``shapes_cnn`` on 32 images, most of the gap to
  PyTorch for single-gradient methods. Raising the mmap and trim thresholds keeps the
  freed buffers in the heap for the next call, and one arena for every thread keeps the
  buffers XLA's own threads allocate there too (a thread's own arena mmaps anything over
  64 MiB). ``benchmarks/gradient_cost.py --malloc compare`` measures it against glibc's
  defaults and tcmalloc. ``$EXPLAIN_MALLOC=system`` keeps the C library's defaults.
* :func:`enable_compilation_cache`: JAX's persistent compilation cache in a per-user
  folder, so a fresh process loads its compiled programs from disk instead of
  compiling them again. ``$EXPLAIN_JAX_CACHE`` picks the folder; empty turns it off.

Example::

    from explain import runtime

    runtime.configure()  # first thing in a launcher, before any JAX work
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

MALLOC_ENV = "EXPLAIN_MALLOC"  # "system": leave the C library's allocator settings alone
CACHE_ENV = "EXPLAIN_JAX_CACHE"  # a folder, or "" to turn the persistent compilation cache off

# mallopt(3) parameter numbers (<malloc.h>) and the values set. Both measured on shapes_cnn's gradient
# (gradient_cost.py --malloc compare): a 16 MiB threshold still mmapped every work buffer (faults as
# without tuning), 64 MiB to 1 GiB removed them. 256 MiB is explain.chunking.MEMORY_BUDGET, one compiled
# call's whole working set, so no buffer of a default-sized chunk is mmapped (a test ties the two).
# The trim threshold keeps up to 1 GiB of freed memory at the top of the heap instead of returning it:
# without it the heap shrank after each call and the pages were faulted in again on the next.
# One arena: a thread other than the main one allocates from an arena of its own, whose heaps are at
# most 64 MiB, so a larger buffer is mmapped whatever the threshold says, and freed arena heaps are
# given back. XLA's threads allocate such buffers: with the two settings above alone, IG with 50 steps
# on 64 images still faulted in 3.6 GB of fresh pages (921,000 faults, 4.8 s); with one arena 17,000
# (3.1 s), as with tcmalloc (benchmarks/gradient_cost.py --malloc compare).
MALLOC_SETTINGS: dict[str, int] = {"M_MMAP_THRESHOLD": 256 * 2**20, "M_TRIM_THRESHOLD": 2**30, "M_ARENA_MAX": 1}
_MALLOPT_PARAM = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3, "M_ARENA_MAX": -8}
# Environment variables through which the user already tunes or replaces glibc's malloc: theirs wins.
_USER_MALLOC_ENV = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
)

_malloc_applied: dict[str, int] | None = None


class Configured(NamedTuple):
    """What :func:`configure` set: the mallopt values (empty when none) and the cache folder (None when off)."""

    malloc: dict[str, int]
    cache_dir: Path | None


def malloc_settings(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """The mallopt settings :func:`tune_malloc` would apply in a process with this environment.

    Empty where they do not apply: not Linux with glibc, ``$EXPLAIN_MALLOC=system``, the user
    tuning glibc's malloc through its own variables, or another allocator preloaded
    (``LD_PRELOAD`` naming tcmalloc, jemalloc, mimalloc: it keeps freed memory already).

    Raises:
      ValueError: ``$EXPLAIN_MALLOC`` is neither ``tuned``, ``system`` nor empty.
    """
    mode = environ.get(MALLOC_ENV, "") or "tuned"
    if mode not in ("tuned", "system"):
        raise ValueError(f"${MALLOC_ENV} must be 'tuned' or 'system', got {mode!r}")
    if mode == "system" or sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return {}
    if any(name in environ for name in _USER_MALLOC_ENV) or preloaded_allocator(environ):
        return {}
    return dict(MALLOC_SETTINGS)


def tune_malloc() -> dict[str, int]:
    """Sets glibc's malloc to keep large freed buffers for reuse (see the module docstring); once per process.

    The thresholds take effect at any time, also after JAX is imported (measured as good as the
    same values set through ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` before the
    process started); the one-arena limit only for threads that have not allocated yet, so call
    it before the first JAX computation starts XLA's threads. Costs resident memory up to the
    largest working set the process has had, held rather than returned to the system between calls.

    Returns:
      The settings applied, by mallopt name (``{}`` where :func:`malloc_settings` says they do
      not apply, or where glibc refused them); the same value on every later call.
    """
    global _malloc_applied
    if _malloc_applied is not None:
        return dict(_malloc_applied)
    applied = {}
    settings = malloc_settings()
    if settings:
        libc = ctypes.CDLL(None)  # the process's own C library: glibc, checked by malloc_settings
        for name, value in settings.items():
            if libc.mallopt(ctypes.c_int(_MALLOPT_PARAM[name]), ctypes.c_int(value)) == 1:
                applied[name] = value
            else:
                log.warning("glibc refused mallopt(%s, %d)", name, value)
    _malloc_applied = applied
    return dict(applied)


# Allocators a child process can be given (benchmarks compare them): glibc as it comes, glibc tuned by
# tune_malloc, or tcmalloc preloaded where the machine has it (Debian: libtcmalloc-minimal4).
ALLOCATORS = ("system", "tuned", "tcmalloc")
_TCMALLOC_LIBS = ("tcmalloc_minimal", "tcmalloc")
_PRELOADED = ("tcmalloc", "jemalloc", "mimalloc")


def find_tcmalloc() -> str | None:
    """The shared library name of tcmalloc on this machine (e.g. ``libtcmalloc_minimal.so.4``), else None."""
    import ctypes.util

    for name in _TCMALLOC_LIBS:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def preloaded_allocator(environ: Mapping[str, str] = os.environ) -> str:
    """The replacement allocator ``LD_PRELOAD`` names (``"tcmalloc"``, ``"jemalloc"``, ``"mimalloc"``), else ``""``."""
    preload = environ.get("LD_PRELOAD", "")
    return next((name for name in _PRELOADED if name in preload), "")


def allocator_env(allocator: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of a child process that runs with ``allocator`` (one of :data:`ALLOCATORS`).

    ``"system"`` and ``"tuned"`` set :data:`MALLOC_ENV` and drop a preloaded allocator;
    ``"tcmalloc"`` preloads it (whose freed memory stays in its own caches: :func:`tune_malloc`
    then does nothing).

    Raises:
      ValueError: an unknown allocator, or ``"tcmalloc"`` on a machine without it.
    """
    if allocator not in ALLOCATORS:
        raise ValueError(f"expected an allocator of {', '.join(ALLOCATORS)}, got {allocator!r}")
    env = {k: v for k, v in environ.items() if k != "LD_PRELOAD"}
    kept = " ".join(p for p in environ.get("LD_PRELOAD", "").split() if not any(a in p for a in _PRELOADED))
    if allocator == "tcmalloc":
        lib = find_tcmalloc()
        if lib is None:
            raise ValueError("tcmalloc is not installed here (Debian/Ubuntu: apt-get install libtcmalloc-minimal4)")
        kept = f"{lib} {kept}".strip()
    if kept:
        env["LD_PRELOAD"] = kept
    env[MALLOC_ENV] = _malloc_mode(allocator)
    return env


def use_allocator(allocator: str, argv: Sequence[str]) -> str:
    """Runs this process (a benchmark) with ``allocator``, one of :data:`ALLOCATORS`; says which is in use.

    For ``"tcmalloc"`` not yet preloaded, restarts ``python argv...`` under it (``os.execve``: does
    not return); otherwise sets :data:`MALLOC_ENV` and applies :func:`tune_malloc`. Call it before
    any JAX work.
    """
    if allocator == "tcmalloc" and not preloaded_allocator():
        os.execve(sys.executable, [sys.executable, *argv], allocator_env("tcmalloc"))
    os.environ[MALLOC_ENV] = _malloc_mode(allocator)
    applied = tune_malloc()
    return str(applied) if applied else preloaded_allocator() or "glibc defaults"


def _malloc_mode(allocator: str) -> str:
    """:data:`MALLOC_ENV`'s value for ``allocator``: glibc's defaults only for ``"system"``."""
    return "system" if allocator == "system" else "tuned"


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/flax-explain/jax``, else ``~/.cache/flax-explain/jax``."""
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flax-explain" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache, in ``path`` or the folder the environment names.

    The folder, first found: ``path``; one JAX has already been given (``JAX_COMPILATION_CACHE_DIR``
    or an earlier ``jax.config.update``: left as it is); ``$EXPLAIN_JAX_CACHE``, where empty turns the cache off; :func:`default_cache_dir`. Every
    compiled program is written, however quickly it compiled: the forward passes compile in
    0.1-0.2 s, under JAX's default 1 s minimum, and together they are most of a first page load.
    Entries are keyed by the computation, the jax/jaxlib versions and the compile options, so a
    stale one is never used; the folder can be deleted at any time. JAX executes what it finds
    there: the folder is created private (0o700), and must not be writable by others.

    Calling again with the same arguments changes nothing. A folder that cannot be created (a
    read-only home) is logged and the cache stays off: no launcher fails for want of it.

    Returns:
      The cache folder, or None when the cache is off.
    """
    import jax

    if path is None and jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    if path is None:
        folder = os.environ.get(CACHE_ENV, str(default_cache_dir()))
        if not folder:
            return None
        path = folder
    folder = Path(path).expanduser()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        log.warning("no persistent compilation cache: %s", e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # small programs too, whatever the filesystem
    return folder


def configure() -> Configured:
    """What every entry point calls first: :func:`tune_malloc` and :func:`enable_compilation_cache`.

    Call it after the arguments are parsed (``--help`` stays free of JAX) and before the first
    JAX computation. Idempotent.
    """
    return Configured(malloc=tune_malloc(), cache_dir=enable_compilation_cache())
