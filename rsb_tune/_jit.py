"""numba's ``njit`` with its disk cache outside the install tree.

numba caches a compiled loop next to its source (``__pycache__`` of the installed package)
when that folder is writable, and an installed package must never write into its own tree
(a ``pip install -e`` over a plain install then leaves the folder behind, and ``import
rsb_tune`` finds an empty namespace package). The cache goes to ``$NUMBA_CACHE_DIR`` when the
user set it, else to ``<rsb-tune's cache dir>/numba`` (``$RSB_TUNE_CACHE_DIR``, else
``$XDG_CACHE_HOME/rsb-tune``, else ``~/.cache/rsb-tune``: :func:`rsb_tune.store.backends.cache_dir`).
"""

from __future__ import annotations

import numba

from rsb_tune.store.backends import cache_dir

__all__ = ["njit", "numba_cache_dir"]


def numba_cache_dir() -> str:
    """Where the compiled loops are cached (numba reads ``NUMBA_CACHE_DIR`` when it is imported)."""
    if not numba.config.CACHE_DIR:
        numba.config.CACHE_DIR = str(cache_dir() / "numba")
    return numba.config.CACHE_DIR


numba_cache_dir()  # before any loop below is decorated: numba picks its cache's place then
njit = numba.njit
