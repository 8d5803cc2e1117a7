#!/usr/bin/env python3
"""A small webhook receiver that verifies vlq's Standard Webhooks signatures.

vlq POSTs each event (job.succeeded, job.failed, job.cancelled) as JSON with:

    webhook-id:        msg_...      the same on every retry of one event
    webhook-timestamp: 1764043200   seconds since the epoch, of this attempt
    webhook-signature: v1,<base64>  HMAC-SHA256 over  id + "." + timestamp + "." + body

The HMAC key is the base64-decoded part of the secret after "whsec_". A receiver checks
the signature over the raw body bytes (before any JSON parsing), compares it in constant
time, rejects timestamps more than --tolerance seconds (default 300) from its clock
(replays), and answers 2xx quickly; a 410 tells vlq to stop sending to this endpoint,
anything else makes it retry later. Deduplicate on webhook-id: a retry after a lost 2xx
sends the same event again.

Each verified request that is answered 2xx is appended to --out as one JSON line:
    {"id": ..., "timestamp": ..., "event": <parsed JSON body or null>,
     "body": <body as text>, "body_sha256": <hex>, "user_agent": ..., "received_at": ...}
With --log, every request (also rejected or failed ones) is appended there as a JSON line
with the status answered, whether its signature verified, and why it was rejected.

The failure options script a misbehaving receiver for tests:
    --status 500                 answer every verified request with 500
    --fail-first 2               answer the first 2 requests with --fail-status (500), then 200
    --hang                       never answer (with --fail-first N: only the first N)
    --retry-after 7              add "Retry-After: 7" to non-2xx answers
    --location URL               add "Location: URL" (for a 3xx --status)
    --hang-path /p               never answer requests to path /p (others as usual)
    --trickle-path /p            answer requests to /p with 200 and a body sent one byte
                                 per --trickle-s seconds (1), never finished in time

Example:
    python3 examples/webhook_receiver.py --port 8080 --secret whsec_... --out events.jsonl
    python3 examples/webhook_receiver.py --port 0 --port-file port.txt --secret whsec_... \\
        --out events.jsonl --fail-first 1

Only the Python standard library is used. The functions sign() and verify() can be
imported by other scripts.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import ssl
import sys
import threading
import time


def secret_key(secret):
    """The HMAC key of a "whsec_<base64>" secret (ValueError if malformed)."""
    if not secret.startswith("whsec_"):
        raise ValueError("secret must start with whsec_")
    b64 = secret[len("whsec_"):]
    return base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)


def sign(secret, msg_id, timestamp, body):
    """The webhook-signature value "v1,<base64>" of body (bytes)."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret, headers, body, tolerance_s=300, now=None):
    """Check a request's Standard Webhooks headers against body (bytes).

    headers maps lowercase names to values. Returns None if the request is authentic,
    else the reason it is not."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    if not msg_id or not ts or not sig_header:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        ts_i = int(ts)
    except ValueError:
        return "webhook-timestamp is not an integer"
    now = time.time() if now is None else now
    if abs(now - ts_i) > tolerance_s:
        return "webhook-timestamp is more than %d s away from now" % tolerance_s
    expected = sign(secret, msg_id, ts_i, body).encode()
    # The header may hold several space-separated signatures (secret rotation).
    for candidate in sig_header.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return None
    return "no valid v1 signature"


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers POSTs as the command line says; see the module docstring."""

    server_version = "vlq-webhook-receiver/1"
    opts = None           # argparse namespace, set in main()
    lock = threading.Lock()
    requests_seen = 0     # every POST, counted for --fail-first

    def log_message(self, fmt, *args):  # keep stderr quiet unless --verbose
        if self.opts.verbose:
            sys.stderr.write("receiver: " + (fmt % args) + "\n")

    def do_POST(self):
        opts = self.opts
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        with Receiver.lock:
            Receiver.requests_seen += 1
            n = Receiver.requests_seen
        reason = verify(opts.secret, headers, body, opts.tolerance) if opts.secret else None
        failing = n <= opts.fail_first
        path = self.path.split("?")[0]
        if reason is None and opts.hang_path and path == opts.hang_path:
            self.append(opts.log, {"n": n, "status": None, "verified": True, "hang": True,
                                   "path": path, "id": headers.get("webhook-id")})
            while True:  # never answer this endpoint; the sender's timeout must fire
                time.sleep(3600)
        if reason is None and opts.trickle_path and path == opts.trickle_path:
            self.append(opts.log, {"n": n, "status": 200, "verified": True, "trickle": True,
                                   "path": path, "id": headers.get("webhook-id")})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while True:  # a body that trickles: the sender's time limits must cut it
                    self.wfile.write(b".")
                    self.wfile.flush()
                    time.sleep(opts.trickle_s)
            except (BrokenPipeError, ConnectionResetError):
                return
        if reason is not None:
            status = 400 if "timestamp" in reason or "missing" in reason else 401
        elif opts.hang and (failing or opts.fail_first == 0):
            self.append(opts.log, {"n": n, "status": None, "verified": True, "hang": True})
            while True:  # never answer; the sender's timeout must fire
                time.sleep(3600)
        elif failing:
            status = opts.fail_status
        else:
            status = opts.status
        record = {"n": n, "status": status, "verified": opts.secret is not None and reason is None,
                  "reason": reason, "id": headers.get("webhook-id"), "path": path}
        self.append(opts.log, record)
        if reason is None and 200 <= status < 300:
            self.append(opts.out, {
                "id": headers.get("webhook-id"),
                "timestamp": headers.get("webhook-timestamp"),
                "event": self.parse_json(body),
                "body": body.decode("utf-8", errors="replace"),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "user_agent": headers.get("user-agent"),
                "content_type": headers.get("content-type"),
                "verified": opts.secret is not None,
                "path": path,
                "received_at": time.time(),
            }, to_stdout=True)
        answer = (reason or "ok").encode() + b"\n"
        if len(answer) < opts.response_bytes:
            answer += b"." * (opts.response_bytes - len(answer))
        self.send_response(status)
        if not 200 <= status < 300 and opts.retry_after is not None:
            self.send_header("Retry-After", opts.retry_after)
        if opts.location is not None:
            self.send_header("Location", opts.location)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        try:
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender stopped reading (vlq reads at most 64 KiB of an answer)

    @staticmethod
    def parse_json(body):
        try:
            return json.loads(body)
        except ValueError:
            return None

    @staticmethod
    def append(path, record, to_stdout=False):
        """Append record as one JSON line to path (or print it when to_stdout)."""
        line = json.dumps(record, ensure_ascii=False)
        with Receiver.lock:
            if path:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            elif to_stdout:
                print(line, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Receive vlq webhooks, verify their signatures, and append each "
                    "accepted event as one JSON line to --out (stdout without it).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The failure options " + __doc__.split("The failure options ")[1].split("Only the")[0].strip())
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (8080)")
    p.add_argument("--port-file", help="write the port listened on to this file once ready")
    p.add_argument("--secret", help="whsec_... secret; without it nothing is verified")
    p.add_argument("--tolerance", type=int, default=300,
                   help="accepted |now - webhook-timestamp| in seconds (300)")
    p.add_argument("--out", help="append accepted events here as JSON lines (default stdout)")
    p.add_argument("--log", help="append every request here as a JSON line: n, status, "
                                 "verified, reason")
    p.add_argument("--status", type=int, default=200, help="status for verified requests (200)")
    p.add_argument("--fail-first", type=int, default=0, metavar="N",
                   help="answer the first N requests with --fail-status instead")
    p.add_argument("--fail-status", type=int, default=500, help="status of --fail-first (500)")
    p.add_argument("--hang", action="store_true",
                   help="never answer (all requests, or the first N with --fail-first N)")
    p.add_argument("--retry-after", help="Retry-After header value on non-2xx answers")
    p.add_argument("--location", help="Location header value (for a 3xx --status)")
    p.add_argument("--hang-path", metavar="PATH",
                   help="never answer requests to this path (other paths answer as usual)")
    p.add_argument("--trickle-path", metavar="PATH",
                   help="answer requests to this path with 200 and a body that trickles")
    p.add_argument("--trickle-s", type=float, default=1.0, metavar="S",
                   help="seconds between the bytes of a --trickle-path body (1)")
    p.add_argument("--cert", help="serve HTTPS with this PEM certificate (needs --key)")
    p.add_argument("--key", help="the PEM private key of --cert")
    p.add_argument("--response-bytes", type=int, default=0, metavar="N",
                   help="pad every answer's body to N bytes (to test the sender's read cap)")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    opts = p.parse_args(argv)
    if bool(opts.cert) != bool(opts.key):
        p.error("--cert and --key go together")
    if opts.secret:
        try:
            secret_key(opts.secret)
        except ValueError as e:
            p.error("--secret: %s" % e)
    return opts


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    Receiver.opts = opts
    server = http.server.ThreadingHTTPServer((opts.host, opts.port), Receiver)
    server.daemon_threads = True
    if opts.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.cert, opts.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    if opts.port_file:
        tmp = opts.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.replace(tmp, opts.port_file)  # readers never see a half-written port
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
