"""Who is calling, and whether they may: identities, credentials, authenticators (static
tokens, JWTs), the authorization policy and the admission step every server runs
(docs/security.md). Wire-neutral: drivers only fill :class:`Credentials`."""

from bridge.auth.guard import DEFAULT_GUARD, AuthConfig, AuthConfigError, Guard
from bridge.auth.identity import (
    ANONYMOUS_IDENTITY,
    IDENTITY_KEY,
    MECHANISMS,
    Credentials,
    Identity,
    bearer_credentials,
)
from bridge.auth.policy import Policy, PolicyError, Request, Rule, load_policy

__all__ = ["ANONYMOUS_IDENTITY", "DEFAULT_GUARD", "IDENTITY_KEY", "MECHANISMS", "AuthConfig",
           "AuthConfigError", "Credentials", "Guard", "Identity", "Policy", "PolicyError",
           "Request", "Rule", "bearer_credentials", "load_policy"]
