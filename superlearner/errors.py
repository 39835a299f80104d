"""Errors a user can cause: each carries one readable line, shown without a traceback by the CLI."""


class UserError(ValueError):
    """A problem with what the user asked for (env id, option, config, checkpoint, CLI input).

    The message is one line that says what was wrong, where, and what would be right.
    """


class UnknownEnvError(UserError, KeyError):
    """An environment id that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(UserError):
    """A bad experiment config: unknown key, wrong type or out-of-range value."""


class CheckpointError(UserError):
    """A checkpoint that is missing, incompatible or corrupted."""
