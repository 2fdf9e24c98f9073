"""One exception type for problems the user can fix; the CLI prints it as one line."""


class SalglError(Exception):
    """Bad input or settings: the message names the file, line or params key to fix."""
