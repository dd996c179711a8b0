"""The HTTP API's JWT authorizer, locally: a project-generated RSA key signs tokens, and requests are checked the
way API Gateway checks them before any function runs.

API Gateway's steps (AWS's "Controlling access to HTTP APIs with JWT authorizers"): take the token from the
identity source (a ``Bearer`` prefix is optional), verify its RS256 signature with the issuer's key named by
``kid``, then check ``iss``, ``aud`` (or ``client_id`` when there is no ``aud``), ``exp``, ``nbf`` and ``iat``;
any failure is 401. A route with authorization scopes also needs one of them in ``scope`` (or ``scp``), else 403.
The claims reach the function as strings under ``requestContext.authorizer.jwt.claims``.
"""

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from sluice_tools.local.template import StackContext, TemplateError

KEY_FILE = "jwt-signing-key.pem"
JWKS_FILE = "jwks.json"
_ALGORITHM = "RS256"


class Unauthorized(Exception):  # noqa: N818 - named after the HTTP status API Gateway answers
    """401: no token, or one the authorizer does not accept (the message says why)."""


class Forbidden(Exception):  # noqa: N818 - named after the HTTP status API Gateway answers
    """403: a valid token without any of the route's scopes."""


@dataclass(frozen=True, slots=True)
class JwtAuthorizerConfig:
    """An HttpApi JWT authorizer of the template, resolved."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    identity_header: str


def jwt_authorizers(context: StackContext, api_logical_id: str) -> dict[str, JwtAuthorizerConfig]:
    """The JWT authorizers an ``AWS::Serverless::HttpApi`` declares, by name."""
    auth = context.template["Resources"][api_logical_id]["Properties"].get("Auth", {})
    authorizers: dict[str, JwtAuthorizerConfig] = {}
    for name, body in auth.get("Authorizers", {}).items():
        if "JwtConfiguration" not in body:
            raise TemplateError(f"authorizer {name}: only JWT authorizers run locally")
        source = str(body.get("IdentitySource", "$request.header.Authorization"))
        if not source.startswith("$request.header."):
            raise TemplateError(f"authorizer {name}: only a header identity source runs locally, not {source}")
        configuration = context.resolve(body["JwtConfiguration"])
        authorizers[name] = JwtAuthorizerConfig(
            name=name,
            issuer=str(configuration["issuer"]),
            audiences=tuple(str(audience) for audience in configuration.get("audience", [])),
            identity_header=source.removeprefix("$request.header.").lower(),
        )
    return authorizers


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The project's local signing key (``.local/jwt-signing-key.pem``), made on first use and kept."""

    key: RSAKey

    @classmethod
    def load_or_create(cls, directory: Path) -> "SigningKey":
        """Read the key, or generate and store one (readable by its owner only) with its public JWKS."""
        path = directory / KEY_FILE
        if path.exists():
            key = RSAKey.import_key(path.read_bytes())
        else:
            directory.mkdir(parents=True, exist_ok=True)
            key = RSAKey.generate_key(2048, private=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.touch(mode=0o600)
            temporary.write_bytes(key.as_pem(private=True))
            temporary.replace(path)  # two first runs at once: one key wins whole, never a torn file
            key = RSAKey.import_key(path.read_bytes())
        signing = cls(key)
        jwks = {"keys": [{**key.as_dict(private=False), "kid": signing.kid, "alg": _ALGORITHM, "use": "sig"}]}
        (directory / JWKS_FILE).write_text(json.dumps(jwks, indent=2) + "\n", encoding="utf-8")
        return signing

    @property
    def kid(self) -> str:
        """The key id tokens carry: the key's RFC 7638 thumbprint."""
        return self.key.thumbprint()

    def mint(self, claims: Mapping[str, Any]) -> str:
        """A signed token with these claims."""
        return jwt.encode({"alg": _ALGORITHM, "kid": self.kid, "typ": "JWT"}, dict(claims), self.key)


def token_claims(  # noqa: PLR0913 - each is a claim of its own
    config: JwtAuthorizerConfig,
    *,
    tenant_claim: str,
    tenant: str,
    subject: str,
    scope: str,
    lifetime_s: int,
    now: int | None = None,
) -> dict[str, Any]:
    """The claims of a local token: what an identity provider would put in an access token for Sluice."""
    issued = int(time.time()) if now is None else now
    return {
        "iss": config.issuer,
        "aud": config.audiences[0] if config.audiences else "",
        "sub": subject,
        tenant_claim: tenant,
        "scope": scope,
        "iat": issued,
        "exp": issued + lifetime_s,
    }


def authorize(
    config: JwtAuthorizerConfig,
    key: SigningKey,
    headers: Mapping[str, str],
    route_scopes: Sequence[str],
    now: int | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Check a request's token; return the claims as API Gateway passes them (all strings) and its scopes."""
    header = headers.get(config.identity_header, "").strip()
    if not header:
        raise Unauthorized("no token: send Authorization: Bearer <token>")
    token = header[7:].strip() if header[:7].lower() == "bearer " else header
    try:
        decoded = jwt.decode(token, key.key, algorithms=[_ALGORITHM])
    except (JoseError, ValueError):
        # A fixed sentence: the library's own message quotes the token's header (its alg), which the sender chose
        # and which would reach the WWW-Authenticate header.
        raise Unauthorized("the token cannot be verified: its form, algorithm or signature is not accepted") from None
    if decoded.header.get("kid") != key.kid:
        raise Unauthorized("the token's kid names no key of the issuer")
    claims = decoded.claims
    _check_claims(config, claims, int(time.time()) if now is None else now)
    scopes = token_scopes(claims)
    if route_scopes and not set(route_scopes) & set(scopes):
        raise Forbidden(f"the route needs one of the scopes {' '.join(route_scopes)}")
    return {name: claim_text(value) for name, value in claims.items()}, scopes


def _check_claims(config: JwtAuthorizerConfig, claims: Mapping[str, Any], now: int) -> None:
    if claims.get("iss") != config.issuer:
        raise Unauthorized(f"the token's issuer is not {config.issuer}")
    audience = claims.get("aud", claims.get("client_id"))
    audiences = {item for item in (audience if isinstance(audience, list) else [audience]) if isinstance(item, str)}
    if not audiences & set(config.audiences):
        raise Unauthorized(f"the token's audience is not {' or '.join(config.audiences)}")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires <= now:
        raise Unauthorized("the token has expired (or carries no exp)")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float) or value > now):
            raise Unauthorized(f"the token's {name} is in the future")


def token_scopes(claims: Mapping[str, Any]) -> list[str]:
    """The scopes a token grants: ``scope`` (space separated) or ``scp`` (a list or a string)."""
    granted = claims.get("scope", claims.get("scp", ""))
    if isinstance(granted, list):
        return [str(scope) for scope in granted]
    return str(granted).split()


def claim_text(value: Any) -> str:
    """A claim as API Gateway renders it in the request context: lists as ``[a b]``, everything as text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + " ".join(claim_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
