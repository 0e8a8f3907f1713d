"""Produce an iterable's items on a thread, ahead of the loop that consumes them.

import-chats parses lines (Python, holding the GIL) and writes them (the
database's work, during which psycopg2 and sqlite3 let go of the GIL). Parsing
the next lines on a thread while the database writes the last ones overlaps the
two. At most `depth` chunks wait at a time, so memory stays flat.
"""
import queue
import threading

_DONE = object()


def read_ahead(iterable, chunk_size=5_000, depth=4):
    """Yield iterable's items in order; an exception it raises is raised here, at the point it was reached.

    Leaving the loop early (an error in the consumer, say) stops the producer.
    """
    chunks = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def hand_over(item):
        while not stopped.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            chunk = []
            for item in iterable:
                chunk.append(item)
                if len(chunk) >= chunk_size:
                    if not hand_over(chunk):
                        return
                    chunk = []
            hand_over(chunk)
            hand_over(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            hand_over(error)

    producer = threading.Thread(target=produce, name="read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item = chunks.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stopped.set()
        # Bounded: a producer blocked reading a stalled pipe (a Ctrl-C mid-import) must not hold the exit;
        # it is a daemon thread, gone with the process.
        producer.join(timeout=1)
