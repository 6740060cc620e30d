"""A Microsoft Entra ID stand-in: OpenID metadata, client-credentials tokens, token checks.

azure-identity's ClientSecretCredential, given the lab as its authority, asks for the OpenID
configuration of the tenant and then posts the client credentials to the token endpoint.
The answers below follow Entra ID's, error codes included, so a wrong secret surfaces in the
product exactly as it would against Azure. Tokens are signed (HMAC) rather than stored, so a
restarted lab still honours the tokens it issued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse

TOKEN_LIFETIME_SECONDS = 3599
# Audiences ARM accepts besides the lab's own URL: the public cloud's, as production uses.
PUBLIC_ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")


@dataclass(frozen=True)
class AppRegistration:
    """The one service principal the lab knows; its secret lives only in the state dir."""

    tenant_id: str
    client_id: str
    client_secret: str
    signing_key: str

    @classmethod
    def create(cls, tenant_id: str) -> "AppRegistration":
        return cls(
            tenant_id=tenant_id,
            client_id=str(uuid.uuid4()),
            client_secret=secrets.token_urlsafe(30),
            signing_key=secrets.token_hex(32),
        )


class TokenError(Exception):
    """A bearer token ARM refuses; carries ARM's error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Identity:
    """Issues and checks the tokens of one tenant."""

    def __init__(self, app: AppRegistration, base_url: str) -> None:
        self.app = app
        self.base_url = base_url.rstrip("/")
        #: token requests by the client id they named, as Entra's sign-in logs count them
        self.token_requests: Counter[str] = Counter()
        #: how long the tokens issued from now on last (a test shortens it to see tokens expire mid-wait)
        self.token_lifetime_seconds = TOKEN_LIFETIME_SECONDS

    def reset(self) -> None:
        self.token_requests.clear()
        self.token_lifetime_seconds = TOKEN_LIFETIME_SECONDS

    def set_token_lifetime(self, seconds: object) -> None:
        """:raise ValueError: not a whole number of seconds from 1 to a day."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= 86_400:
            raise ValueError(f"token_lifetime_seconds must be a whole number from 1 to 86400; got {seconds!r}")
        self.token_lifetime_seconds = seconds

    def status(self) -> dict:
        return {"token_requests": dict(self.token_requests),
                "token_requests_total": sum(self.token_requests.values()),
                "token_lifetime_seconds": self.token_lifetime_seconds}

    # ---- issuing -------------------------------------------------------------------------
    def openid_configuration(self, request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        if tenant.lower() != self.app.tenant_id.lower():
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        root = f"{self.base_url}/{self.app.tenant_id}"
        return JSONResponse(
            {
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "issuer": f"{root}/v2.0",
                "jwks_uri": f"{root}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "response_types_supported": ["code", "id_token", "token"],
                "tenant_region_scope": "EU",
            }
        )

    async def token(self, request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        if tenant.lower() != self.app.tenant_id.lower():
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        form = await request.form()
        self.token_requests[str(form.get("client_id") or "").lower()] += 1
        grant_type = form.get("grant_type")
        if grant_type != "client_credentials":
            return _aad_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = str(form.get("client_id") or "")
        if client_id.lower() != self.app.client_id.lower():
            return _aad_error(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.app.tenant_id}'.",
            )
        secret = str(form.get("client_secret") or "")
        if not hmac.compare_digest(secret.encode(), self.app.client_secret.encode()):
            return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        scope = str(form.get("scope") or "")
        resources = [s.removesuffix("/.default") for s in scope.split() if s.endswith("/.default")]
        if len(resources) != 1:
            return _aad_error(
                400, "invalid_scope", 1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier.",
            )
        lifetime = self.token_lifetime_seconds
        expires_on = int(time.time()) + lifetime
        token = self._sign({"aud": resources[0], "tid": self.app.tenant_id,
                            "appid": self.app.client_id, "exp": expires_on, "jti": uuid.uuid4().hex})
        return JSONResponse(
            {"token_type": "Bearer", "expires_in": lifetime,
             "ext_expires_in": lifetime, "access_token": token}
        )

    # ---- checking (ARM side) -------------------------------------------------------------
    def check_bearer(self, authorization: str | None) -> dict:
        """Return the token's claims, or raise TokenError shaped like ARM's 401s."""
        if not authorization:
            raise TokenError("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TokenError(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        claims = self._verify(token.strip())
        if claims is None:
            raise TokenError("InvalidAuthenticationToken", "The access token is invalid.")
        if claims["exp"] < time.time():
            raise TokenError(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            )
        accepted = {self.base_url, *PUBLIC_ARM_AUDIENCES}
        if claims["aud"].rstrip("/") not in accepted:
            raise TokenError(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{claims['aud']}'. "
                f"It should exactly match with one of the allowed audiences '{self.base_url}/', "
                "'https://management.azure.com/'.",
            )
        return claims

    def www_authenticate(self) -> str:
        return (
            f'Bearer authorization_uri="{self.base_url}/{self.app.tenant_id}", '
            'error="invalid_token", error_description="The authentication failed."'
        )

    # ---- token format --------------------------------------------------------------------
    def _sign(self, claims: dict) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
        mac = hmac.new(self.app.signing_key.encode(), body, hashlib.sha256).hexdigest()
        return f"{body.decode()}.{mac}"

    def _verify(self, token: str) -> dict | None:
        body, _, mac = token.partition(".")
        expected = hmac.new(self.app.signing_key.encode(), body.encode(), hashlib.sha256).hexdigest()
        if not mac or not hmac.compare_digest(mac, expected):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not {"aud", "exp"} <= claims.keys():
            return None
        return claims


def _aad_error(status: int, error: str, code: int, description: str) -> JSONResponse:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return JSONResponse(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        },
        status_code=status,
    )
