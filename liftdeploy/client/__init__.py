"""The client: calls a deployed (or local) service through the openai SDK, with no hard-coded URL.

`api` is the `Client` (retries on cold-start 503s, strict JSON, schema validation with the
guard's own code), `endpoints` resolves the service URL (`MODAL_ENDPOINT_URL` or Modal's lookup),
`schemacheck` checks a JSON schema against the grammar backends before it is sent, `routing`
sends a release's share of requests to the candidate app (falling back to production). It imports
the runtime part (the guard's checks) and the spec only for typing.
"""

from liftdeploy._lazy import lazy_exports

_EXPORTS = {
    "Client": "liftdeploy.client.api",
    "Answer": "liftdeploy.client.api",
    "Health": "liftdeploy.client.api",
    "RetryPolicy": "liftdeploy.client.api",
    "resolve_url": "liftdeploy.client.endpoints",
    "check_schema": "liftdeploy.client.schemacheck",
    "RoutedClient": "liftdeploy.client.routing",
    "ReleaseRouter": "liftdeploy.client.routing",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
