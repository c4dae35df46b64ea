import Foundation
import XCTest

@testable import MNIST

/// `Download.fetch` against a local server that misbehaves in the ways a mirror or a hostile network
/// can: every case must end, quickly, with an error that says what happened.
final class DownloadTests: XCTestCase {
    /// Paths: /file (5,000 bytes), /announced (claims a terabyte), /endless (no length, 4 MB),
    /// /stall (10 of 100 bytes, then silence), /missing (404), /loop (redirects to itself),
    /// /hop (redirects to /file). As a proxy it opens the tunnel CONNECT asks for and answers the
    /// request sent through it itself with "proxied <host:port> <path>".
    private static let script = """
        import http.server, time
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def head(self, status, headers):
                self.send_response(status)
                for k, v in headers: self.send_header(k, v)
                self.end_headers()
            def do_CONNECT(self):
                self.head(200, [])
                inner = self.rfile.readline().split()
                while self.rfile.readline() not in (b"\\r\\n", b"\\n", b""): pass
                body = ("proxied " + self.path + " " + inner[1].decode()).encode()
                self.wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
                self.close_connection = True
            def do_GET(self):
                if self.path == "/file":
                    self.head(200, [("Content-Length", "5000")]); self.wfile.write(b"x" * 5000)
                elif self.path == "/announced":
                    self.head(200, [("Content-Length", str(10**12))]); self.wfile.write(b"x" * 10)
                elif self.path == "/endless":
                    self.head(200, [("Connection", "close")])
                    for _ in range(64): self.wfile.write(b"y" * 65536)
                    self.close_connection = True
                elif self.path == "/stall":
                    self.head(200, [("Content-Length", "100")]); self.wfile.write(b"z" * 10); self.wfile.flush()
                    time.sleep(10)
                elif self.path == "/loop":
                    self.head(302, [("Location", "/loop"), ("Content-Length", "0")])
                elif self.path == "/hop":
                    self.head(302, [("Location", "/file"), ("Content-Length", "0")])
                else:
                    self.head(404, [("Content-Length", "0")])
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """

    private func reason(_ body: () throws -> Data) -> (String, Bool)? {
        do {
            _ = try body()
            return nil
        } catch let error as DownloadError {
            return (error.reason, error.isHTTPStatus)
        } catch {
            return ("\(error)", false)
        }
    }

    func testAFileArrivesWithItsProgressAndRedirectsAreFollowed() throws {
        let server = try LocalHTTPServer(script: Self.script)
        var reports: [(Int64, Int64?)] = []
        let data = try Download.fetch(server.url.appendingPathComponent("file")) { reports.append(($0, $1)) }
        XCTAssertEqual(data, Data(repeating: UInt8(ascii: "x"), count: 5000))
        XCTAssertEqual(reports.last?.0, 5000)
        XCTAssertEqual(reports.last?.1, 5000)
        XCTAssertEqual(try Download.fetch(server.url.appendingPathComponent("hop")).count, 5000)
    }

    func testEveryFailureEndsWithItsReason() throws {
        let server = try LocalHTTPServer(script: Self.script)
        func fetch(_ path: String, timeout: TimeInterval = 30) -> (String, Bool)? {
            reason { try Download.fetch(server.url.appendingPathComponent(path), timeout: timeout, limit: 1 << 20) }
        }
        let missing = fetch("missing")
        XCTAssertEqual(missing?.0, "HTTP status 404")
        XCTAssertEqual(missing?.1, true)
        XCTAssertTrue(
            fetch("announced")?.0.contains("announces 1000000000000 bytes") ?? false,
            "\(String(describing: fetch("announced")))")
        let endless = fetch("endless")
        XCTAssertTrue(endless?.0.contains("sent more than 1048576 bytes") ?? false, "\(String(describing: endless))")
        XCTAssertEqual(endless?.1, false)
        let start = Date()
        let stall = fetch("stall", timeout: 1)
        XCTAssertEqual(stall?.0, "no data for longer than the timeout")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(fetch("loop")?.0, "the redirects go round in a circle")
        let port = try LocalHTTPServer(script: Self.script).port  // a port nothing listens on once it is released
        XCTAssertNotNil(reason { try Download.fetch(URL(string: "http://127.0.0.1:\(port)/x")!, timeout: 1) })
        XCTAssertEqual(reason { try Download.fetch(URL(string: "ftp://127.0.0.1/x")!) }?.0, "not an http or https URL")
    }

    func testTheProxyTheEnvironmentNamesIsUsed() throws {
        let proxy = try LocalHTTPServer(script: Self.script)
        let environment = ["http_proxy": "127.0.0.1:\(proxy.port)"]
        let chosen = try XCTUnwrap(Download.proxy(scheme: "http", host: "mirror.invalid", environment: environment))
        XCTAssertEqual(chosen.host, "127.0.0.1")
        XCTAssertEqual(chosen.port, proxy.port)
        // Through the proxy's tunnel, a host that does not exist is reached: the proxy answers for it.
        setenv("http_proxy", "http://127.0.0.1:\(proxy.port)", 1)
        defer { unsetenv("http_proxy") }
        let data = try Download.fetch(URL(string: "http://mirror.invalid/train.gz")!)
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "proxied mirror.invalid:80 /train.gz")
    }

    func testNoProxyAndTheSchemesAreReadAsCurlReadsThem() {
        let environment = [
            "https_proxy": "http://secure.proxy:3128", "http_proxy": "plain.proxy:8080",
            "no_proxy": "localhost, .internal.example,Data.Example",
        ]
        func proxy(_ scheme: String, _ host: String) -> String? {
            Download.proxy(scheme: scheme, host: host, environment: environment).map { "\($0.host):\($0.port)" }
        }
        XCTAssertEqual(proxy("https", "mirror.example"), "secure.proxy:3128")
        XCTAssertEqual(proxy("http", "mirror.example"), "plain.proxy:8080")
        XCTAssertNil(proxy("https", "localhost"))
        XCTAssertNil(proxy("https", "a.internal.example"))
        XCTAssertNil(proxy("https", "internal.example"))
        XCTAssertNil(proxy("https", "data.example"))
        XCTAssertNil(proxy("https", "files.data.example"))
        XCTAssertEqual(proxy("https", "notdata.example"), "secure.proxy:3128")
        XCTAssertNil(Download.proxy(scheme: "https", host: "x", environment: ["https_proxy": "p:1", "no_proxy": "*"]))
        XCTAssertNil(Download.proxy(scheme: "https", host: "x", environment: [:]))
        XCTAssertNil(Download.proxy(scheme: "https", host: "x", environment: ["https_proxy": "p:1"])?.authorization)
        let credentials = Download.proxy(
            scheme: "https", host: "x", environment: ["https_proxy": "http://ann:s%40cret@p:1"])?.authorization
        XCTAssertEqual(credentials, .basic(username: "ann", password: "s@cret"))
        // curl ignores an upper-case HTTP_PROXY (a CGI program's environment could set it from a header).
        XCTAssertNil(Download.proxy(scheme: "http", host: "x", environment: ["HTTP_PROXY": "p:1"]))
        XCTAssertEqual(
            Download.proxy(scheme: "https", host: "x", environment: ["HTTPS_PROXY": "p:1"]).map(\.port), 1)
    }
}
