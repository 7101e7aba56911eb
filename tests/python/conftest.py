"""pytest set-up: the qnoise package from this source tree, with the operator library ctest names
($QNOISE_OPS_LIBRARY) or the build tree's."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
