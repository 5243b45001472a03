"""The API's routers, one module per area; :func:`hub.api.app.create_app` includes them."""
