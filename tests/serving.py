"""gunicorn as the Procfile runs it, for tests that go over real HTTP."""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """`gunicorn app:app --config gunicorn.conf.py` on a free loopback port, with the given environment."""

    def __init__(self, environ, log_path, workers=4, port=None):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w+")
        env = {**os.environ, **environ, "PORT": str(self.port), "WEB_CONCURRENCY": str(workers)}
        self.process = subprocess.Popen([GUNICORN, "app:app", "--config", "gunicorn.conf.py",
                                         "--bind", f"127.0.0.1:{self.port}"],
                                        cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_until_up()

    def wait_until_up(self, seconds=30):
        deadline = time.monotonic() + seconds
        while True:
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("gunicorn did not start:\n" + self.read_log())
            time.sleep(0.1)

    def read_log(self):
        self.log.flush()
        with open(self.log_path) as log:
            return log.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=40)
        text = self.read_log()
        self.log.close()
        return text


class SlowClients:
    """Connections that send nothing, and connections that trickle a request a byte every 50 ms."""

    def __init__(self, port, idle, trickling, padding=400):
        self.request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * padding + b"\r\n\r\n"
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle + trickling)]
        self.trickling = self.sockets[idle:]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        sent = 0
        while not self.stop.wait(0.05) and sent < len(self.request) - 1:
            for sock in self.trickling:
                with contextlib.suppress(OSError):
                    sock.send(self.request[sent:sent + 1])
            sent += 1

    def still_open(self):
        """How many of the slow connections the server has not closed."""
        open_count = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                open_count += sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                open_count += 1
            except OSError:
                pass
        return open_count

    def close(self):
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()
