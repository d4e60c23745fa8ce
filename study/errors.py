"""The errors kdstudy reports as one line: usage errors (exit code 2) and a diverged distillation (exit code 1).

Kept apart from the modules that raise them, which import torch and transformers, so that the CLI can catch them
without loading either: a help text or a bad config answers at once.
"""


class ConfigError(ValueError):
    """A usage error in a config file or a --set override; the message is one readable line."""


class DataError(ValueError):
    """A corpus or benchmark file that cannot be used; the message says which and why."""


class ModelError(ValueError):
    """A model that cannot be used here; the message names it and says why."""


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the message gives the step and the terms."""


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a study's trials and saved its state: the study folder can be resumed."""


class TrackingUnavailable(RuntimeError):
    """The study's trials are done but the tracking server did not take their runs or the front; --resume does."""


USAGE_ERRORS = (ConfigError, DataError, ModelError, FileNotFoundError)
