"""SYT Queue HTTP ingress (FastAPI). ``api.app.create_asgi_app`` builds what is served."""
