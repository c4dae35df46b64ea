// A tcp relay for tests that look at what crosses the wire: it forwards every connection made to its
// loopback port to another port and keeps a copy of the bytes that passed each way.
import Foundation

/// Forwards connections from `port` to `targetPort` on 127.0.0.1, recording the traffic.
// @unchecked Sendable: the recorded bytes are read and written under `lock`; descriptors are owned
// by the threads that use them.
final class TCPRelay: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let targetPort: Int
    private let lock = NSLock()
    private var fromServer: [UInt8] = []
    private var fromClient: [UInt8] = []

    init(to targetPort: Int) throws {
        self.targetPort = targetPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ready = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(listener, generic, length) == 0 && getsockname(listener, generic, &length) == 0
            }
        }
        guard listener >= 0, ready, listen(listener, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    /// Stops accepting (connections already relayed end when either side closes).
    func stop() { shutdown(listener, Int32(SHUT_RDWR)) }

    /// Everything the server (the target) sent so far.
    var bytesFromServer: [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        return fromServer
    }

    /// Everything clients sent so far.
    var bytesFromClients: [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        return fromClient
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: targetPort)
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard connected else {
                close(client)
                close(server)
                continue
            }
            Thread.detachNewThread { [self] in pump(from: client, to: server, serverSide: false) }
            Thread.detachNewThread { [self] in pump(from: server, to: client, serverSide: true) }
        }
    }

    /// Copies bytes until either side closes, then shuts both down (the descriptors stay open until
    /// the test process exits: closing one while the other pump may still use it would be a race).
    private func pump(from source: Int32, to target: Int32, serverSide: Bool) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            lock.lock()
            if serverSide { fromServer += buffer[0..<count] } else { fromClient += buffer[0..<count] }
            lock.unlock()
            var offset = 0
            while offset < count {
                let written = buffer[offset..<count].withUnsafeBytes { write(target, $0.baseAddress, $0.count) }
                guard written > 0 else { break }
                offset += written
            }
            guard offset == count else { break }
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(target, Int32(SHUT_RDWR))
    }
}
