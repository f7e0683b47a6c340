"""A forward HTTP proxy on loopback for the uploader's tests (upload_proxy = http://…): it passes
every request to the server the absolute URI names, unchanged (so SigV4 signatures still hold),
and records what went through. On demand it breaks what a faulty gateway or network would: the
Nth UploadPart answered 500 without being sent on, HEAD answers with another ETag (a 200 that
left no such object), or a download arrives damaged."""
import http.client
import http.server
import threading
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "proxy-authorization", "proxy-authenticate"}


class S3Proxy:
    def __init__(self):
        self.requests = []  # (method, decoded path with query) of every request seen
        self.fail_part = None  # fail the UploadPart with this part number, once
        self.wrong_head_etag = None  # a key suffix whose HEAD answers another ETag
        self.corrupt_get = None  # a key suffix whose GET bodies arrive with one byte changed
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = url.path + (f"?{url.query}" if url.query else "")
                query = urllib.parse.parse_qs(url.query)
                with proxy._lock:  # paths recorded decoded, as keys are written
                    proxy.requests.append((self.command, urllib.parse.unquote(url.path) +
                                           (f"?{url.query}" if url.query else "")))
                    fail = (self.command == "PUT" and proxy.fail_part is not None and
                            query.get("partNumber") == [str(proxy.fail_part)])
                    if fail:
                        proxy.fail_part = None
                if fail:
                    text = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "expect"}
                conn.request(self.command, target, body=body, headers=headers)
                rs = conn.getresponse()
                data = rs.read()
                self.send_response(rs.status, rs.reason)
                for k, v in rs.getheaders():
                    if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                        continue
                    if (k.lower() == "etag" and self.command == "HEAD" and
                            proxy.wrong_head_etag and url.path.endswith(proxy.wrong_head_etag)):
                        v = '"00000000000000000000000000000000-1"'
                    self.send_header(k, v)
                length = rs.getheader("Content-Length") if self.command == "HEAD" else None
                if (self.command == "GET" and rs.status == 200 and data and proxy.corrupt_get and
                        url.path.endswith(proxy.corrupt_get)):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]  # damaged on the way
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
