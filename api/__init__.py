"""SYT Queue HTTP ingress (FastAPI). Build the app with ``api.app.create_app``."""
