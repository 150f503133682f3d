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


class DatasetFormatError(FlambyFlareError, ValueError):
    """A dataset file is not in its format; the message names the file, row and column, never a value."""


class MissingExtraError(FlambyFlareError, ImportError):
    """An optional dependency of flamby-flare (an extra, e.g. ``images``) is not installed."""


class SiteStateError(FlambyFlareError, RuntimeError):
    """A site's run state is missing, unreadable or unwritable."""


def site_message(exc: BaseException) -> str:
    """What a site may tell the server about ``exc``: this project's own messages (they name files, rows,
    columns and settings, never a data value), else only the exception's type; the site's log has the rest."""
    if isinstance(exc, FlambyFlareError):
        return str(exc)
    return f"{type(exc).__name__} (the site's log has the details)"


# How the server's controller ends a run that was stopped under it (its sites stopped, the job was aborted);
# the POC runner prefers NVFlare's own, more specific reason when there is one.
RUN_STOPPED_EARLY = "the run stopped before its end, with no result"
