"""The one exception type that reaches the user as a single line (see ``cli.main``)."""


class UserError(Exception):
    """Bad input from the user: an unknown game, a missing file, a corrupt archive, a wrong flag.

    The CLI prints ``error: <message>`` and exits non-zero; no traceback.
    """
