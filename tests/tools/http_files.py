#!/usr/bin/env python3
"""http_files: a loopback HTTP server for the tests of http(s) inputs (src/fetch.c).

Paths:
  /files/NAME          the file NAME of --dir (404 when absent); counted in --log
  /status/N            status N with a short body
  /redirect?to=URL     302 to URL
  /chunked/N           N bytes (b"x"), chunked, no Content-Length
  /slow/MS             waits MS milliseconds, then 200 "late"
  /fail-first/K/NAME   503 for the first K requests of this path, then /files/NAME
Writes the port it listens on to --port-file once it listens; logs one line per
request (method path status) to --log when given.
"""
import argparse
import http.server
import os
import sys
import threading
import time
import urllib.parse

counts = {}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def note(self, status):
        if ARGS.log:
            with lock, open(ARGS.log, "a") as f:
                f.write("%s %s %d\n" % (self.command, self.path, status))

    def send_body(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.note(status)

    def serve_file(self, name):
        path = os.path.join(ARGS.dir, os.path.basename(name))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return self.send_body(404, b"no such file\n")
        self.send_body(200, data, [("Content-Type", "application/octet-stream")])

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        if parts[0] == "files" and len(parts) == 2:
            return self.serve_file(parts[1])
        if parts[0] == "status" and len(parts) == 2:
            return self.send_body(int(parts[1]), b"status\n")
        if parts[0] == "redirect":
            to = urllib.parse.parse_qs(u.query).get("to", [""])[0]
            return self.send_body(302, b"moved\n", [("Location", to)])
        if parts[0] == "chunked" and len(parts) == 2:
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while n > 0:
                k = min(n, 65536)
                self.wfile.write(b"%x\r\n" % k + b"x" * k + b"\r\n")
                n -= k
            self.wfile.write(b"0\r\n\r\n")
            return self.note(200)
        if parts[0] == "slow" and len(parts) == 2:
            time.sleep(int(parts[1]) / 1000.0)
            return self.send_body(200, b"late\n")
        if parts[0] == "fail-first" and len(parts) == 3:
            with lock:
                counts[u.path] = counts.get(u.path, 0) + 1
                n = counts[u.path]
            if n <= int(parts[1]):
                return self.send_body(503, b"busy\n")
            return self.serve_file(parts[2])
        self.send_body(404, b"unknown path\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hangs up mid-body (the size cap) is expected, not news


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=".")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ARGS = ap.parse_args()
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, ARGS.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
