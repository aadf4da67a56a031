"""The exceptions nanoae raises on purpose.

Each one carries a message a user can act on: what was expected, what was
found, and what to do. Shape and dtype mistakes in the numerical core are plain
``ValueError``/``TypeError`` (as NumPy users expect); problems with files on
disk get their own classes so a caller can catch exactly them.

The ``nanoae`` command exits with 2 on ``UsageError`` and ``DataDirError`` (the
arguments are wrong, as argparse's own errors) and with 1 on the other errors.
"""


class NanoaeError(Exception):
    """Base class of the errors below."""


class DatasetError(NanoaeError):
    """A Fashion-MNIST file is missing, truncated, corrupt or cannot be fetched.

    The message names the file, what was expected, what was found, and what to do.
    """


class DataDirError(DatasetError):
    """The directory the user named (``--data-dir`` or ``$NANOAE_DATA_DIR``) cannot serve the
    data: it does not exist, or a file is missing there. The command line exits with 2."""


class CheckpointError(NanoaeError):
    """A checkpoint file cannot be read, or does not match the model it is loaded into."""


class TrainingError(NanoaeError):
    """Training cannot go on (for example, the loss became NaN or infinite)."""


class UsageError(NanoaeError):
    """Arguments that cannot work together, or a file of the wrong kind given to an option;
    the command line prints the one-line message and exits with 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``fit`` between two steps, after its callbacks saved the run.

    Under MPI every rank raises it at the same step (the ranks agree on the
    stop), so the job ends in order rather than through ``MPI_Abort``.
    """
