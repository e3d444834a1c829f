"""Exceptions raised by mobclip_core. Every message names the problem and the fix."""


class MobClipError(ValueError):
    """Base class of all errors the library raises on bad input or state."""


class InvalidInputError(MobClipError):
    """Input data is malformed: wrong columns, out-of-range coordinates, empty layers."""


class UnknownTripLayoutError(InvalidInputError):
    """A trip table whose header is no known layout; ``columns`` holds its column names (a GUI can ask for them)."""

    def __init__(self, message: str, columns: list[str]) -> None:
        super().__init__(message)
        self.columns = list(columns)


class DependencyInstallError(MobClipError):
    """Installing the plugin's Python packages failed; the message says why and what to try."""


class ResolutionError(MobClipError):
    """An H3 resolution outside 0..15."""


class CRSError(MobClipError):
    """A layer has no CRS or one that cannot be transformed to WGS84."""


class ModalityMissingError(MobClipError):
    """A modality was requested but no cell has it."""


class CheckpointError(MobClipError):
    """A checkpoint does not exist, is not ours, or has the wrong shape."""


class WorkerError(MobClipError):
    """Work run in a child Python process (training, torch models for QGIS) failed; the message says why."""


class OutputInUseError(MobClipError):
    """An existing output could not be replaced (on Windows: another program, such as QGIS, holds it open); the
    previous outputs were left as they were."""


class ConfigError(MobClipError):
    """A configuration file names an unknown option or an inconsistent value."""


class ModelNotFittedError(MobClipError):
    """transform/save was called before fit."""


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message says what to install."""


class OutsideExtentWarning(UserWarning):
    """A distilled encoder was asked about points outside the area it was trained on."""
