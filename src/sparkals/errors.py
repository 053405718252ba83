"""The errors a user can act on: the CLI prints them without a stack trace."""

__all__ = ["EmptyHoldoutError", "PipelineError", "SparkalsError"]


class SparkalsError(Exception):
    """Something about the input, configuration or stored outputs is wrong; the message says what."""


class PipelineError(SparkalsError):
    """A stage cannot run: the message says what is missing or wrong and what to do."""


class EmptyHoldoutError(PipelineError):
    """The split leaves no training or no test events: there is nothing to evaluate."""
