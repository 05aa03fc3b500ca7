"""Static bearer tokens, configured only as hashes (docs/security.md, "Tokens").

The token file is TOML; each ``[[tokens]]`` table names a principal, the SHA-256 of its
token (hex) and, optionally, its groups::

    [[tokens]]
    principal = "ops-console"
    sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    groups = ["operators"]

The tokens themselves are never stored: ``python3 -m bridge.auth.tokens PRINCIPAL``
prints a new random token (32 bytes from :mod:`secrets`, 256 bits) once, for the
client, and the table to add to the file. A fast hash is the right one for such
tokens: with 256 random bits there is nothing to guess, so a slow, salted password hash
(scrypt, argon2) would only cost time on every request without making the file any
harder to turn back into tokens. Human-chosen passwords do not belong here.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.auth.identity import MAX_GROUPS, TOKEN, Identity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Static tokens shorter than this are refused outright (not even hashed).
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096


class TokenFileError(ValueError):
    """A token file that cannot be used; the message says where and why (never a hash)."""


def token_hash(token: str) -> str:
    """The SHA-256 hex digest a token file holds for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A new random token: 32 bytes from :mod:`secrets`, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class StaticTokens:
    """The identities of the tokens of one token file, by the SHA-256 of each token."""

    by_hash: Mapping[str, Identity]
    source: str = "<tokens>"

    def identify(self, token: str) -> Identity | None:
        """The identity of ``token``, or None when it is not one of the file's.

        The lookup is by hash: how long it takes tells nothing about the stored tokens.
        """
        if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
            return None
        return self.by_hash.get(token_hash(token))

    def __len__(self) -> int:
        return len(self.by_hash)


def parse_tokens(data: Mapping[str, Any], source: str = "<tokens>") -> StaticTokens:
    """The tokens of a parsed token file; :class:`TokenFileError` if invalid."""
    unknown = sorted(set(data) - {"tokens"})
    if unknown:
        raise TokenFileError(f"{source}: unknown key(s) {', '.join(unknown)}; a token file "
                             "holds [[tokens]] tables")
    items = data.get("tokens", [])
    if not isinstance(items, list):
        raise TokenFileError(f"{source}: tokens must be an array of tables ([[tokens]])")
    by_hash: dict[str, Identity] = {}
    for index, item in enumerate(items):
        where = f"{source}: tokens[{index}]"
        if not isinstance(item, dict):
            raise TokenFileError(f"{where} must be a table")
        extra = sorted(set(item) - {"principal", "sha256", "groups"})
        if extra:
            if "token" in extra:
                raise TokenFileError(f"{where}: tokens are configured by their sha256 only, "
                                     "never in clear (python3 -m bridge.auth.tokens)")
            raise TokenFileError(f"{where}: unknown key(s) {', '.join(extra)}; known: "
                                 "principal, sha256, groups")
        principal, digest = item.get("principal"), item.get("sha256")
        groups = item.get("groups", [])
        if not isinstance(principal, str) or not principal or principal == "anonymous":
            raise TokenFileError(f"{where}: principal must be a non-empty string other than "
                                 "'anonymous'")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
            raise TokenFileError(f"{where} ({principal}): sha256 must be 64 hex digits")
        if (not isinstance(groups, list) or len(groups) > MAX_GROUPS
                or not all(isinstance(g, str) and g for g in groups)):
            raise TokenFileError(f"{where} ({principal}): groups must be a list of names")
        if digest.lower() in by_hash:
            raise TokenFileError(f"{where} ({principal}): the same token hash is listed "
                                 "twice")
        by_hash[digest.lower()] = Identity(principal, TOKEN, tuple(groups))
    return StaticTokens(by_hash, source)


def load_tokens(path: str) -> StaticTokens:
    """Read the token file at ``path``; :class:`TokenFileError` says what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise TokenFileError(f"cannot read token file {path!r}: {exc.strerror or exc}") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise TokenFileError(f"token file {path!r} is not valid TOML: {exc}") from None
    return parse_tokens(data, path)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m bridge.auth.tokens PRINCIPAL [GROUP...]``: a new token and its table."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python3 -m bridge.auth.tokens PRINCIPAL [GROUP...]\n"
              "Prints a new random token (give it to the client; it is not stored) and\n"
              "the [[tokens]] table to add to the server's token file.", file=sys.stderr)
        return 2
    token = new_token()
    principal, groups = args[0], args[1:]
    print(f"# token for {principal} (shown once; the server keeps only its hash):",
          file=sys.stderr)
    print(token, file=sys.stderr)
    # TOML basic strings escape as JSON strings do.
    groups_text = ", ".join(json.dumps(group) for group in groups)
    print(f"[[tokens]]\nprincipal = {json.dumps(principal)}\n"
          f'sha256 = "{token_hash(token)}"' + (f"\ngroups = [{groups_text}]" if groups else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
