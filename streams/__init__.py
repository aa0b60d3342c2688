"""faust-streaming processors. Build the app with :func:`streams.app.create_app`; nothing here
creates an App, a loop or a connection at import time."""
