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


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files are missing, truncated or changed since they were written."""


class RunLockedError(UserError):
    """A run directory that another process is writing (`superlearner.run.lock`)."""


class RunWriteError(UserError):
    """A file of a run that could not be written: a full disk, a lost permission, a failing file
    system. The run stops; what was written before stays as it was."""

    @classmethod
    def of(cls, path, what: str, error: BaseException) -> "RunWriteError":
        """``<path>: <what> could not be written (<reason>)``, the reason being the operating
        system's where one is in the chain of causes (``[Errno 28] No space left on device``)."""
        return cls(f"{path}: {what} could not be written ({_reason(error)})")


def _reason(error: BaseException) -> str:
    seen, depth = error, 0
    while seen is not None and depth < 20:
        if isinstance(seen, OSError) and seen.errno is not None:
            return f"[Errno {seen.errno}] {seen.strerror or 'operating system error'}"
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__
