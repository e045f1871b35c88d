"""Errors a user can act on. Each message says what is wrong and what to do."""


class KDSearchError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class DataError(KDSearchError):
    """The dataset cannot be read or is unusable (missing file/column, one class, ...)."""


class ModelError(KDSearchError):
    """A teacher or student cannot be loaded or built."""


class ConfigError(KDSearchError):
    """A configuration value is invalid in a way the schema cannot see."""


class TrainingError(KDSearchError):
    """Training diverged (NaN/inf loss or logits) or could not run."""
