"""A webhook receiver to start from: checks each delivery's Standard Webhooks signature, skips a batch it has
seen (by webhook-id), and prints each change. The standard library and the `standardwebhooks` package only.

    WEBHOOK_SECRET=whsec_… python examples/webhooks/receiver.py 9000

Answer 2xx only once a batch is stored: Chatstore sends it again (same webhook-id, same body) until it gets one,
and sends the session's next batch only after it. Keep the webhook-ids you have seen for longer than a retry
can take (WEBHOOK_RETRY_HOURS). On `chat.resync_required`, read the session's changes feed from the start.
"""
import http.server
import json
import os
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

VERIFIER = Webhook(os.environ["WEBHOOK_SECRET"])
SEEN = set()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            event = VERIFIER.verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.send_response(401)
            self.end_headers()
            return
        if self.headers["webhook-id"] not in SEEN:
            SEEN.add(self.headers["webhook-id"])
            data = event["data"]
            if event["type"] == "chat.resync_required":
                print(f"{data['sessionId']}: resync from the feed, without since", flush=True)
            for change in data.get("changes", []):
                state = "deleted" if change["deleted"] else json.dumps(change["chat"], separators=(",", ":"))
                print(f"{data['sessionId']} {change['jid']} by {change['changedBy']}: {state}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
