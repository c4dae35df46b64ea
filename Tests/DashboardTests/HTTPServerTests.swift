// The server on a real socket: binding (port 0, an address in use), the upload timeout and the
// concurrency limit against clients that send a request's head and hold back its body, and a
// graceful stop.
import ConvNet
import Dashboard
import Foundation
import Hummingbird
import Logging
import TestSupport
import Training
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A plain TCP client: what a slow or hostile HTTP client would send, byte by byte.
final class RawConnection {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 { return }
            offset += sent
        }
    }

    /// Everything the server sends until it closes the connection or 20 s pass.
    func receiveAll() -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
            if let text = String(bytes: received, encoding: .utf8), let head = text.range(of: "\r\n\r\n"),
                let length = text[..<head.lowerBound].split(separator: "\r\n").first(where: {
                    $0.lowercased().hasPrefix("content-length:")
                }).flatMap({ Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }),
                received.count >= text.utf8.distance(from: text.utf8.startIndex, to: head.upperBound) + length
            {
                break
            }
        }
        return String(decoding: received, as: UTF8.self)
    }
}

final class HTTPServerTests: XCTestCase {
    private func startServer(limit: Int, timeout: Duration) throws -> (HTTPServer, PredictionServer, TemporaryDirectory)
    {
        let directory = try TemporaryDirectory("http")
        let url = directory.file("model.safetensors")
        try Network(architecture: ModelPreset.defaultPreset.architecture, seed: 3).folded().save(to: url)
        let routes = PredictionServer(
            reader: DigitReader(ensemble: try Ensemble(loading: [url])), modelNames: ["model.safetensors"],
            parameterCount: 1, maximumConcurrentPredictions: limit, uploadTimeout: timeout)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let server = try HTTPServer.start(
            router: routes.router(), address: HTTPAddress(host: "127.0.0.1", port: 0), logger: logger)
        return (server, routes, directory)
    }

    func testHeldBackUploadsTakeTheirPlacesUntilTheTimeoutThenOthersAreServed() throws {
        let (server, routes, _) = try startServer(limit: 2, timeout: .seconds(2))
        defer { server.stop() }
        XCTAssertNotEqual(server.address.port, 0, "port 0 is replaced by the bound port")
        let png = try PredictionServerTests.sevenPNG()
        // Two clients announce a body and send none of it: they hold both places.
        let slow = try (0..<2).map { _ in try RawConnection(port: server.address.port) }
        for connection in slow {
            connection.send("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: \(png.count)\r\n\r\n")
        }
        Thread.sleep(forTimeInterval: 0.5)
        // A third is refused at once with 503 and Retry-After.
        let third = try RawConnection(port: server.address.port)
        third.send("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: \(png.count)\r\n\r\n")
        third.send(png)
        let refused = third.receiveAll()
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 503"), refused)
        XCTAssertTrue(refused.lowercased().contains("retry-after: 1"), refused)
        XCTAssertTrue(refused.contains("busy"), refused)
        // The held-back uploads time out with 408 and free their places.
        for connection in slow {
            let answer = connection.receiveAll()
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 408"), answer)
            XCTAssertTrue(answer.contains("did not arrive within 2 s"), answer)
        }
        let fourth = try RawConnection(port: server.address.port)
        fourth.send("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: \(png.count)\r\n\r\n")
        fourth.send(png)
        let answered = fourth.receiveAll()
        XCTAssertTrue(answered.hasPrefix("HTTP/1.1 200"), answered)
        XCTAssertTrue(answered.contains("\"digit\":"), answered)
        let metrics = String(decoding: routes.metrics.render(), as: UTF8.self)
        XCTAssertTrue(metrics.contains("mnist_serve_rejected_total{reason=\"busy\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("mnist_serve_rejected_total{reason=\"timeout\"} 2"), metrics)
    }

    func testAnAddressInUseIsReportedAndStopReturns() throws {
        let (server, _, _) = try startServer(limit: 1, timeout: .seconds(1))
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        XCTAssertThrowsError(
            try HTTPServer.start(router: Router(), address: server.address, logger: logger)
        ) { error in
            XCTAssertTrue("\(error)".contains("cannot serve HTTP on 127.0.0.1:\(server.address.port)"), "\(error)")
        }
        server.stop()
        XCTAssertThrowsError(try RawConnection(port: server.address.port), "nothing listens after stop()")
    }

    func testAddressesParseAndOnlyLoopbackIsLocal() {
        XCTAssertEqual(HTTPAddress(parsing: "8080"), HTTPAddress(host: "127.0.0.1", port: 8080))
        XCTAssertEqual(HTTPAddress(parsing: "0.0.0.0:80"), HTTPAddress(host: "0.0.0.0", port: 80))
        XCTAssertEqual(HTTPAddress(parsing: "[::1]:9"), HTTPAddress(host: "::1", port: 9))
        for bad in ["", ":80", "host:", "host:65536", "host:-1", "[::1:80", "a:b"] {
            XCTAssertNil(HTTPAddress(parsing: bad), bad)
        }
        XCTAssertTrue(HTTPAddress(host: "127.0.0.1", port: 1).isLoopback)
        XCTAssertTrue(HTTPAddress(host: "localhost", port: 1).isLoopback)
        XCTAssertTrue(HTTPAddress(host: "::1", port: 1).isLoopback)
        XCTAssertFalse(HTTPAddress(host: "0.0.0.0", port: 1).isLoopback)
        XCTAssertFalse(HTTPAddress(host: "10.0.0.1", port: 1).isLoopback)
        XCTAssertEqual(HTTPAddress(host: "::1", port: 9).url, "http://[::1]:9/")
    }
}
