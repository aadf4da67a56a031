"""Child processes that a test sends SIGINT (Ctrl-C), from any shell."""

import signal


def sigint_as_default():
    """``preexec_fn`` for a child that a test interrupts: SIGINT back to its default, which
    Python turns into KeyboardInterrupt. A background job's children inherit an ignored
    SIGINT otherwise (``... &``, nohup), and nanoae rightly leaves that ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sigint_ignored():
    """``preexec_fn`` for a child started as a shell starts a background job: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
