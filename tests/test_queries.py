"""Queries per request: at most 1 with a JWT and 2 with an API key, for GET one and a list page."""
import pytest

import models
from conftest import SESSION_ID, add_chats, chat_url


@pytest.fixture
def query_log(monkeypatch):
    """The SQL each request runs, counted at peewee's one door to the driver."""
    statements = []
    real = models.database.obj.execute_sql

    def counting(sql, params=None, *args, **kwargs):
        statements.append(sql)
        return real(sql, params, *args, **kwargs)
    monkeypatch.setattr(models.database.obj, "execute_sql", counting)
    return statements


@pytest.mark.parametrize("url", [chat_url(SESSION_ID, "1@s.whatsapp.net"), chat_url(SESSION_ID) + "?limit=2",
                                 chat_url(SESSION_ID) + "?limit=2&type=dm"])
def test_queries_per_read(client, tokens, headers, orgs, query_log, url):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(5)))
    # Warm-up: the first request records the key's last use, fetches the JWKS, loads the cursor key.
    first = client.get(url, headers=headers).get_json()
    query_log.clear()
    assert client.get(url, headers=headers).status_code == 200
    limit = 1 if headers["Authorization"].startswith("Bearer eyJ") else 2
    assert len(query_log) <= limit, query_log
    if "nextCursor" in first:
        query_log.clear()
        assert client.get(url + "&cursor=" + first["nextCursor"], headers=headers).status_code == 200
        assert len(query_log) <= limit, query_log
