"""The exceptions nanoae raises on purpose.

Each one carries a message a user can act on: what was expected, what was
found, and what to do. Shape and dtype mistakes in the numerical core are plain
``ValueError``/``TypeError`` (as NumPy users expect); problems with files on
disk get their own classes so a caller can catch exactly them.
"""


class NanoaeError(Exception):
    """Base class of the errors below."""


class DatasetError(NanoaeError):
    """A Fashion-MNIST file is missing, truncated, corrupt or cannot be fetched.

    The message names the file, what was expected, what was found, and what to do.
    """


class CheckpointError(NanoaeError):
    """A checkpoint file cannot be read, or does not match the model it is loaded into."""


class TrainingError(NanoaeError):
    """Training cannot go on (for example, the loss became NaN or infinite)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``fit`` between two steps, after its callbacks saved the run.

    Under MPI every rank raises it at the same step (the ranks agree on the
    stop), so the job ends in order rather than through ``MPI_Abort``.
    """
