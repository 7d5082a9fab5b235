"""The revisions, oldest first (``revision`` / ``down_revision`` in each file)."""
