"""A webhook receiver on loopback, as a user would write one: it checks each delivery's Standard Webhooks
signature with the `standardwebhooks` library, deduplicates on webhook-id, and answers as a test tells it to."""
import http.server
import json
import sys
import threading

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class QuietServer(http.server.ThreadingHTTPServer):
    """A sender that went away (killed, stopped) before the answer is not an error of the receiver's."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Receiver:
    """Records every POST as it arrives (headers, body, whether its signature verified with the secrets given),
    then answers `answer(delivery) -> status` (200 by default) and records the status."""

    def __init__(self, secrets=(), answer=None):
        self.secrets, self.answer = list(secrets), answer or (lambda delivery: 200)
        self.deliveries, self.accepted, self.lock = [], {}, threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                delivery = {"path": self.path, "headers": headers, "body": body,
                            "verified_by": receiver.verified_by(headers, body), "status": None}
                with receiver.arrived:  # recorded as it arrives, answered after
                    receiver.deliveries.append(delivery)
                    receiver.arrived.notify_all()
                status = receiver.answer(delivery)
                with receiver.arrived:
                    delivery["status"] = status
                    if 200 <= status < 300 and delivery["verified_by"]:
                        receiver.accepted.setdefault(headers["webhook-id"], json.loads(body))
                    receiver.arrived.notify_all()
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{receiver.url}/redirected")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verified_by(self, headers, body):
        """The secrets whose signature the delivery carries (the standardwebhooks library decides)."""
        verified = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified.append(secret)
            except WebhookVerificationError:
                pass
        return verified

    def wait_for(self, predicate, seconds=10):
        """Wait until predicate(deliveries) holds; the deliveries then (AssertionError after `seconds`)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: predicate(self.deliveries), timeout=seconds):
                raise AssertionError(f"not received within {seconds} s: {len(self.deliveries)} deliveries")
            return list(self.deliveries)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
