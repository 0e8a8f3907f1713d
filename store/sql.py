"""SQL text with named parameters, sent to either backend.

Every statement of the store is written once with `:name` placeholders and run with a dict of parameters:
a parameter is found by its name, not its place, so a fragment carries its parameters wherever it is put
in a statement, and reordering fragments can't bind one's values to another's placeholders. SQLite takes
`:name` as it is; for psycopg2 the text is turned (once per text) into its `%(name)s` style.
"""
import functools
import re

from models import database, on_postgresql

PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=512)
def driver_text(text, postgresql):
    """The statement in the driver's parameter style (psycopg2 reads `%` as its own, so a literal one doubles)."""
    if not postgresql:
        return text
    return PARAMETER.sub(r"%(\1)s", text.replace("%", "%%"))


def execute(text, params=None):
    """Run a statement; its cursor."""
    return database.execute_sql(driver_text(text, on_postgresql()), params or {})


def execute_read(text, params):
    """A hot read's rows: a SELECT, as a prepared statement on PostgreSQL (store.prepared), on the process's read
    connection on SQLite (models.SqliteReadConnection)."""
    return database.obj.execute_read(driver_text(text, on_postgresql()), params)


def rows_as_dicts(cursor):
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def columns(fields):
    """`expression AS "name", …` of (name, expression) pairs."""
    return ", ".join(f'{expression} AS "{name}"' for name, expression in fields)


def nulls(fields):
    return ", ".join(f'NULL AS "{name}"' for name, _ in fields)
