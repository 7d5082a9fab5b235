"""Alembic migrations of the results database (see :mod:`trustwatch.platform.migrate`, which runs them).

``versions/`` holds one revision per schema change, oldest first: ``v0001_baseline`` creates the
schema as it stood when migrations began (the tables ``create_all`` made, with every column added
in place before); later revisions change it. Alembic is configured in code (no alembic.ini):
``env.py`` runs on the connection :mod:`~trustwatch.platform.migrate` hands it, in batch mode on
SQLite (a change SQLite cannot ALTER in place copies the table).

A new revision: a file ``versions/vNNNN_<what>.py`` with ``revision``, ``down_revision`` (the
previous one), ``upgrade()`` and ``downgrade()``, and the same change made to the tables of
``trustwatch/platform/store.py``; tests/platform/test_migrations.py checks that ``upgrade head``
gives exactly those tables.
"""
