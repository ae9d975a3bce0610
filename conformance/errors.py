"""One exception tree for the whole engine.

    ConformanceError                 anything the user can act on; has diagnostics()
    ├── UsageError                   wrong option or argument
    ├── IdentifierError              not a valid Norwegian identifier
    ├── SheetError                   the integration-test sheet cannot be read
    ├── CredentialError              certificate / key / password problems
    ├── AuthError                    Maskinporten refused us (carries the MP code and advice)
    ├── TargetEnvironmentError       the environment misbehaved: 5xx, timeout, dropped connection
    │   └── ProductionTargetError    a production URL was given: refused before any request
    ├── PackError                    a result pack cannot be built
    ├── InvalidPack                  a received pack is unusable (not a zip, hostile, malformed)
    └── SandboxError                 the embedded test environment cannot start or be used

Third-party errors (httpx, openpyxl, cryptography) are wrapped at the boundary with
``raise ... from exc`` so the CLI and the plugin only ever handle this tree.
"""

from __future__ import annotations


class ConformanceError(Exception):
    """Base class: an error with a plain-language explanation for the person running the tool."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        if self.hint:
            return f"{self.message}\n  {self.hint}"
        return self.message


class UsageError(ConformanceError):
    pass


class IdentifierError(ConformanceError):
    pass


class SheetError(ConformanceError):
    pass


class CredentialError(ConformanceError):
    pass


class AuthError(ConformanceError):
    """Maskinporten answered with an error. ``mp_code`` is e.g. ``MP-110`` when known."""

    def __init__(
        self, message: str, *, hint: str | None = None, mp_code: str | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.mp_code = mp_code
        self.error = error


class TargetEnvironmentError(ConformanceError):
    """The environment under test failed (5xx, timeout, connection): the case is an *error*,
    not *failed* — the bank's integration was not shown to be wrong."""


class ProductionTargetError(TargetEnvironmentError):
    pass


class PackError(ConformanceError):
    pass


class InvalidPack(ConformanceError):
    pass


class SandboxError(ConformanceError):
    pass
