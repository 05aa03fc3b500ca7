"""Exception classes for the failure round-trip tests (an importable, allowed module)."""


class AppError(Exception):
    """An application exception with positional and keyword arguments."""

    def __init__(self, code, detail="none", **kwargs):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.kwargs = kwargs
