"""A small, fast HTTP server for the download benchmark, shaped like Swarming's.

    python3 benches/fileserver.py DIR

Prints the port it listens on (127.0.0.1, chosen by the kernel) on stdout, then
serves until killed:

    GET /NAME/bot_code                       -> 302 to /swarming/api/v1/bot/bot_code/NAME
    GET /swarming/api/v1/bot/bot_code/NAME   -> 200, DIR/NAME's bytes

The body goes out with sendfile(2) from the page cache, so the server costs
next to nothing and cannot be what limits either client. HTTP/1.1 keep-alive
lets a client follow the redirect on the same connection, as with the real
server behind a load balancer.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSIONED = "/swarming/api/v1/bot/bot_code/"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = "."

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path.endswith("/bot_code") and path.count("/") == 2:
            name = path.split("/")[1]
            self.send_response(302)
            self.send_header("Location", VERSIONED + name)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = path[len(VERSIONED) :] if path.startswith(VERSIONED) else ""
        if not name or "/" in name or name.startswith("."):
            self.send_error(404)
            return
        try:
            f = open(os.path.join(self.root, name), "rb")
        except FileNotFoundError:
            self.send_error(404)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.connection.sendfile(f)

    def log_message(self, format, *args):
        pass  # quiet: one line per request would cost more than the request


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fileserver.py DIR")
    Handler.root = sys.argv[1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
