"""peewee's connection pool, with a shorter path for what every request does: take an idle connection, give it back.

Every API request checks a connection out and back in. Under gevent, where
peewee's per-thread state is a greenlet-local and every lock is gevent's,
peewee's own path for that (the database's lock, the pool's lock in a
wrapper, a debug log call, a tuple of three per check-out) cost 110k
instructions a request, a tenth of a GET of one chat. Here an idle
connection is taken and given back under the pool's lock alone, with the same
checks: a connection the server closed or one past its stale timeout is
dropped, one left inside a transaction is not reused. Everything else (no
idle connection: open one, or wait for one to come back, up to the pool's
timeout; closing idle connections) is peewee's own, on the same structures.

The connection's state (peewee's thread-local, a greenlet-local under
gevent) is read and written through its `__dict__`, once a check-out or
check-in: each attribute of a subclassed gevent local costs ~2k instructions
to reach, and peewee's set_connection and reset wrote five each, 19 a
request in all (38k instructions of a served GET of one chat). The fields are
peewee's own (tests/test_lean_pool.py holds them to set_connection's and
reset's).
"""
import heapq
import time

from playhouse.pool import PoolConnection


def opened_state(connection):
    """peewee's connection state once set_connection(connection) has run."""
    return {"conn": connection, "closed": False, "ctx": [], "transactions": [], "commit_callbacks": []}


def closed_state():
    """peewee's connection state once reset() has run."""
    return {"closed": True, "conn": None, "ctx": [], "transactions": [], "commit_callbacks": []}


class LeanPool:
    """A mixin, before peewee's Pooled…Database class."""

    def connect(self, reuse_if_open=False):
        state = self._state.__dict__  # this thread's (greenlet's) own
        if state["closed"]:
            connection = self._take_idle()
            if connection is not None:
                state.update(opened_state(connection))
                return True
        return super().connect(reuse_if_open)  # none idle: peewee opens one, or waits for one to come back

    def close(self):
        state = self._state.__dict__
        if state["closed"] or state["transactions"]:
            return super().close()  # nothing to give back, or peewee's error for an open transaction
        connection = state["conn"]
        state.update(closed_state())
        self._give_back(connection)
        return True

    def _take_idle(self):
        now = time.time()
        with self._pool_lock:
            while self._connections:
                opened_at, _, connection = heapq.heappop(self._connections)
                if self._is_closed(connection):
                    continue
                if self._stale_timeout and now - opened_at > self._stale_timeout:
                    self._close_raw(connection)
                    continue
                self._in_use[self.conn_key(connection)] = PoolConnection(opened_at, connection, now)
                return connection
        return None

    def _give_back(self, connection):
        with self._pool_lock:
            checked_out = self._in_use.pop(self.conn_key(connection), None)
            if checked_out is not None:
                stale = self._stale_timeout and time.time() - checked_out.timestamp > self._stale_timeout
                if stale or not self._can_reuse(connection):
                    self._close_raw(connection)
                else:
                    self._heap_counter += 1
                    heapq.heappush(self._connections, (checked_out.timestamp, self._heap_counter, connection))
            self._pool_available.notify()  # a request waiting for a connection may take one now
