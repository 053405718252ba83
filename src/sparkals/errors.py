"""The errors a user can act on: the CLI prints them without a stack trace and exits with the
error's `exit_status`."""

__all__ = ["EmptyHoldoutError", "LockError", "PipelineError", "SparkalsError", "unwritable_root"]


class SparkalsError(Exception):
    """Something about the input, configuration or stored outputs is wrong; the message says what."""

    exit_status = 1


class PipelineError(SparkalsError):
    """A stage cannot run: the message says what is missing or wrong and what to do."""


class EmptyHoldoutError(PipelineError):
    """The split leaves no training or no test events: there is nothing to evaluate."""


class LockError(SparkalsError):
    """Another run holds the lock of this output root: this one stopped before writing anything.
    Its own exit status, so that a scheduler can tell "busy, try later" from a failure."""

    exit_status = 5


def unwritable_root(root: str, reason: str) -> PipelineError:
    """The one message for an output root that refuses writes (read-only, no permission, full),
    whichever write found out first: the run lock or the nightly's probe."""
    return PipelineError(
        f"output.root {root} cannot be written ({reason}); nothing was changed. Make it writable "
        "(permissions, a read-only mount, free space) or set output.root to another location."
    )
