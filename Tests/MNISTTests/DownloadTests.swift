import Foundation
import TestSupport
import XCTest

@testable import MNIST

/// `Download.fetch` (the curl program as a child process) against a local server that misbehaves in
/// the ways a mirror or a hostile network can: every case must end, quickly, with an error that says
/// what happened.
final class DownloadTests: XCTestCase {
    /// Paths: /file (5,000 bytes), /announced (claims a terabyte), /endless (no length, 4 MB),
    /// /stall (10 of 100 bytes, then silence), /missing (404), /loop (redirects to itself),
    /// /hop (redirects to /file), /chain/N (N redirects, then /file). As a proxy (a request for an
    /// absolute URL, as curl sends one for an http URL) it answers itself, with
    /// "proxied <URL> <user:password from Proxy-Authorization>".
    private static let script = """
        import base64, http.server, time
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def head(self, status, headers):
                self.send_response(status)
                for k, v in headers: self.send_header(k, v)
                self.end_headers()
            def do_GET(self):
                if self.path.startswith("http://"):
                    auth = self.headers.get("Proxy-Authorization", "").split()
                    who = base64.b64decode(auth[1]).decode() if auth[:1] == ["Basic"] else "-"
                    body = ("proxied " + self.path + " " + who).encode()
                    self.head(200, [("Content-Length", str(len(body)))]); self.wfile.write(body)
                elif self.path == "/file":
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
                elif self.path.startswith("/chain/"):
                    n = int(self.path[7:])
                    self.head(302, [("Location", "/chain/%d" % (n - 1) if n > 1 else "/file"), ("Content-Length", "0")])
                else:
                    self.head(404, [("Content-Length", "0")])
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """

    /// This process's environment without the proxy variables curl reads, plus `extra`.
    private func environment(_ extra: [String: String] = [:]) -> [String: String] {
        let proxies = ["http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"]
        return ProcessInfo.processInfo.environment.filter { !proxies.contains($0.key) }.merging(extra) { $1 }
    }

    private func fetch(
        _ url: URL, timeout: TimeInterval = 30, limit: Int = Download.defaultLimit,
        environment: [String: String]? = nil,
        progress: (Int64, Int64?) -> Void = { _, _ in }
    ) throws -> Data {
        try Download.fetch(
            url, timeout: timeout, limit: limit, environment: environment ?? self.environment(), progress: progress)
    }

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
        let data = try fetch(server.url.appendingPathComponent("file")) { reports.append(($0, $1)) }
        XCTAssertEqual(data, Data(repeating: UInt8(ascii: "x"), count: 5000))
        XCTAssertEqual(reports.last?.0, 5000)
        // The headers are read before the body: every report knows the length.
        XCTAssertFalse(reports.isEmpty)
        XCTAssertTrue(reports.allSatisfy { $0.1 == 5000 }, "\(reports)")
        XCTAssertEqual(try fetch(server.url.appendingPathComponent("hop")).count, 5000)
        XCTAssertEqual(try fetch(server.url.appendingPathComponent("chain/5")).count, 5000)
        // The public entry point, with this process's environment.
        XCTAssertEqual(try Download.fetch(server.url.appendingPathComponent("file")).count, 5000)
    }

    /// curl runs with `--disable`: a ~/.curlrc that sends everything to a dead proxy is not read.
    func testTheUsersCurlrcIsIgnored() throws {
        let server = try LocalHTTPServer(script: Self.script)
        let home = try TemporaryDirectory("curlrc")
        let deadPort = try LocalHTTPServer(script: Self.script).port  // nothing listens once it is released
        try Data("proxy = \"http://127.0.0.1:\(deadPort)\"\nnoproxy = \"\"\n".utf8).write(to: home.file(".curlrc"))
        var environment = environment(["HOME": home.url.path])
        environment["CURL_HOME"] = nil
        environment["XDG_CONFIG_HOME"] = nil
        XCTAssertEqual(try fetch(server.url.appendingPathComponent("file"), environment: environment).count, 5000)
    }

    func testEveryFailureEndsWithItsReason() throws {
        let server = try LocalHTTPServer(script: Self.script)
        func fetch(_ path: String, timeout: TimeInterval = 30) -> (String, Bool)? {
            reason { try self.fetch(server.url.appendingPathComponent(path), timeout: timeout, limit: 1 << 20) }
        }
        let missing = fetch("missing")
        XCTAssertEqual(missing?.0, "HTTP status 404")
        XCTAssertEqual(missing?.1, true)

        var start = Date()
        let announced = fetch("announced")
        XCTAssertTrue(
            announced?.0.contains("announces 1000000000000 bytes") ?? false, "\(String(describing: announced))")
        XCTAssertEqual(announced?.1, false)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)

        // No length announced: the body is counted as it comes and curl stopped at the limit.
        var received: Int64 = 0
        let endless = reason {
            try self.fetch(server.url.appendingPathComponent("endless"), limit: 1 << 20) { count, _ in received = count
            }
        }
        XCTAssertEqual(endless?.0, "the server sent more than 1048576 bytes, more than the 1 MiB a file here may have")
        XCTAssertEqual(endless?.1, false)
        XCTAssertGreaterThan(received, 0)
        XCTAssertLessThanOrEqual(received, 1 << 20)

        start = Date()
        let stall = fetch("stall", timeout: 1)
        XCTAssertEqual(stall?.0, "no data for longer than the timeout (1 s)")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)

        XCTAssertEqual(fetch("loop")?.0, "more than five redirects")
        XCTAssertEqual(fetch("chain/6")?.0, "more than five redirects")
        let port = try LocalHTTPServer(script: Self.script).port  // a port nothing listens on once it is released
        let refused = reason { try self.fetch(URL(string: "http://127.0.0.1:\(port)/x")!, timeout: 1) }
        XCTAssertEqual(refused?.0, "cannot connect to the server (refused or unreachable)")
        XCTAssertEqual(refused?.1, false)
        XCTAssertEqual(reason { try self.fetch(URL(string: "ftp://127.0.0.1/x")!) }?.0, "not an http or https URL")
        XCTAssertEqual(reason { try self.fetch(URL(string: "file:///etc/passwd")!) }?.0, "not an http or https URL")
    }

    func testWithoutCurlTheErrorSaysHowToInstallIt() throws {
        let empty = try TemporaryDirectory("no-curl")
        let missing = reason {
            try self.fetch(URL(string: "http://127.0.0.1/x")!, environment: self.environment(["PATH": empty.url.path]))
        }
        XCTAssertTrue(missing?.0.contains("apt-get install curl") ?? false, "\(String(describing: missing))")
    }

    /// For an http URL curl sends the proxy the absolute URL (no CONNECT tunnel), with the user and
    /// password from `http_proxy`, percent-escapes undone.
    func testTheProxyTheEnvironmentNamesIsUsed() throws {
        let proxy = try LocalHTTPServer(script: Self.script)
        let environment = environment(["http_proxy": "http://u:s%40cret@127.0.0.1:\(proxy.port)"])
        // A host that does not exist is reached: the proxy answers for it.
        let data = try fetch(URL(string: "http://mirror.invalid/train.gz")!, environment: environment)
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "proxied http://mirror.invalid/train.gz u:s@cret")
    }

    func testNoProxyMakesTheRequestGoDirect() throws {
        let server = try LocalHTTPServer(script: Self.script), proxy = try LocalHTTPServer(script: Self.script)
        let url = server.url.appendingPathComponent("file")
        let proxied = environment(["http_proxy": "127.0.0.1:\(proxy.port)"])
        XCTAssertEqual(
            String(decoding: try fetch(url, environment: proxied), as: UTF8.self), "proxied \(url.absoluteString) -")
        for exclusion in ["127.0.0.1", "localhost,127.0.0.1", "*"] {
            let direct = proxied.merging(["no_proxy": exclusion]) { $1 }
            XCTAssertEqual(
                try fetch(url, environment: direct), Data(repeating: UInt8(ascii: "x"), count: 5000), exclusion)
        }
    }
}
