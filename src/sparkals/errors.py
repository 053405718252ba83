"""The one base class for errors a user can act on: the CLI prints them without a stack trace."""


class SparkalsError(Exception):
    """Something about the input, configuration or stored outputs is wrong; the message says what."""
