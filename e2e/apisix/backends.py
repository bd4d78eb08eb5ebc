"""Real backends on loopback: each answers with its own name, over HTTP or plain TCP."""

import http.server
import socketserver
import threading


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.server.backend_name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(self.server.backend_name.encode())


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Backend:
    """One server on 127.0.0.1 at a free port, answering its name; kind is "http" or "tcp"."""

    def __init__(self, name, kind="http", port=0):
        cls, handler = (_HttpServer, _HttpHandler) if kind == "http" else (_TcpServer, _TcpHandler)
        self.server = cls(("127.0.0.1", port), handler)
        self.server.backend_name = name
        self.name, self.kind = name, kind
        self.ip, self.port = self.server.server_address
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Fleet:
    """Backends by name, created on first use."""

    def __init__(self):
        self.all = {}

    def get(self, name, kind="http"):
        if name not in self.all:
            self.all[name] = Backend(name, kind)
        return self.all[name]

    def stop(self, name):
        """Stops a backend: connections to its port are refused until `restart`."""
        self.all[name].close()

    def restart(self, name):
        """Starts a stopped backend again on the same port."""
        old = self.all[name]
        self.all[name] = Backend(name, old.kind, old.port)

    def close(self):
        for b in self.all.values():
            b.close()
