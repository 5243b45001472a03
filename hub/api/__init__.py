"""The hub's REST API (FastAPI): admin CRUD, floor actions, reports, authentication.

Build it with :func:`hub.api.app.create_app`; create login accounts from code with
:func:`hub.api.auth.create_account`.
"""
