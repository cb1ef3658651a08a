"""One small exception hierarchy: the command line turns any RlfmError into a one-line message."""


class RlfmError(Exception):
    """Base class of every error rlfm raises on purpose (bad input, not a bug)."""


class InvalidMDPError(RlfmError, ValueError):
    """An MDP (arrays or `.npz` file) that breaks the format of docs/environments.md."""


class InvalidDataError(RlfmError, ValueError):
    """Transitions or a dataset that do not fit the MDP they are meant for."""


class InvalidEnvironmentError(RlfmError, ValueError):
    """An environment id that is unknown, or whose spaces are not Discrete."""


class CheckpointError(RlfmError):
    """A checkpoint that is missing, corrupted or of an incompatible version."""


class ResourceLimitError(RlfmError, MemoryError):
    """A request that would exceed the memory available; refused before allocating."""
