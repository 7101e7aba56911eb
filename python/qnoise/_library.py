"""Loads qnoise's operator library (torch.ops.qnoise, torch.classes.qnoise) into this process.

Looked for, in order: the file named by $QNOISE_OPS_LIBRARY, libqnoise_ops.so beside this package
(where `cmake --install` puts it), and the build tree of the source checkout this package sits in
(build/src/libqnoise_ops.so), so tests run against the fresh build.
"""
import os
from pathlib import Path

import torch

_LIBRARY_NAME = "libqnoise_ops.so"
_loaded = None


def _candidates():
    named = os.environ.get("QNOISE_OPS_LIBRARY")
    if named:
        yield Path(named)
        return
    here = Path(__file__).resolve().parent
    yield here / _LIBRARY_NAME
    yield here.parent.parent / "build" / "src" / _LIBRARY_NAME


def load_library():
    """Loads the operator library once; returns its path. Raises ImportError naming where it looked."""
    global _loaded
    if _loaded is not None:
        return _loaded
    tried = []
    for path in _candidates():
        tried.append(str(path))
        if path.is_file():
            torch.ops.load_library(str(path))
            _loaded = str(path)
            return _loaded
    raise ImportError(
        "qnoise: cannot find its operator library (" + _LIBRARY_NAME + "); looked at " + ", ".join(tried)
        + ". Build it (scripts/setup.sh, or cmake --build build --target qnoise_ops) or set QNOISE_OPS_LIBRARY."
    )


load_library()
ops = torch.ops.qnoise
classes = torch.classes.qnoise
