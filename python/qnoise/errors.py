"""The exception qnoise raises for input it cannot use (the C++ operators raise RuntimeError)."""


class QnoiseError(ValueError):
    """A model, plan, pattern or file that qnoise cannot use; the message names the problem."""
