"""Errors a user can act on. Each message is one line that says what to do."""


class FlambyFlareError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits non-zero."""


class UnknownDatasetError(FlambyFlareError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DatasetNotFoundError(FlambyFlareError, FileNotFoundError):
    """The dataset's files are not where they were looked for."""


class CorruptedDatasetError(FlambyFlareError):
    """A dataset file is present but its checksum does not match the published one."""


class DownloadError(FlambyFlareError):
    """A file could not be fetched from its source or mirror."""

