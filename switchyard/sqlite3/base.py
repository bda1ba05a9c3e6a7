"""Django's SQLite backend, with the database file 0600 from its creation.

SQLite creates a new database file 0644 (less the umask), and its -wal and
-shm files with the mode of the main file. Creating the file before SQLite
opens it covers every database: var/switchyard.sqlite3, the test database
(which Django deletes and recreates at each run) and any DATABASE_URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.backends.sqlite3 import base

from switchyard.private_files import private_file


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        database = str(conn_params["database"])
        # Django opens every database with uri=True: a plain path stays a path,
        # a "file:" URI is SQLite's to parse.
        if not self.is_in_memory_db() and not database.startswith("file:"):
            private_file(Path(database))
        return super().get_new_connection(conn_params)
