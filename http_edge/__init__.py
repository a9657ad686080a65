"""The HTTP edge: aiohttp app, strict schemas, JWT scopes, problem+json errors, metrics."""
