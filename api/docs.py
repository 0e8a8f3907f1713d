"""GET /docs: Swagger UI rendering /openapi.json, its assets served from the swagger-ui-bundle-v2 package.

No CDN: many deployments have no outbound access, and a page that loads
scripts from elsewhere would run code Chatstore doesn't ship.
"""
from flask import Blueprint, Response
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__, static_folder=str(swagger_ui_path), static_url_path="/docs/assets")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Chatstore API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/initializer.js"></script>
</body>
</html>
"""
# A file of its own rather than an inline script, so a Content-Security-Policy without 'unsafe-inline' works.
INITIALIZER = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""


@bp.get("/docs")
def docs_page():
    """The API reference for people."""
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/initializer.js")
def docs_initializer():
    return Response(INITIALIZER, mimetype="text/javascript")
