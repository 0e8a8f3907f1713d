"""The HTTP layer: blueprints, errors in the one envelope, conditional requests, cursors, OpenAPI, docs, CORS."""
