// Socket options: the handful this project sets, each a named method that goes through zmqCall.
// Options must be set before bind/connect to affect that connection (libzmq's rule).
import CZeroMQ

extension Socket {
    // MARK: Typed options

    /// How long unsent messages are kept after close, in ms (0: drop them; every socket starts at 0).
    public func setLinger(milliseconds: Int) throws { try setInt32Option(ZMQ_LINGER, milliseconds, name: "ZMQ_LINGER") }
    public func linger() throws -> Int { try int32Option(ZMQ_LINGER, name: "ZMQ_LINGER") }

    /// The identity a ROUTER peer sees for this socket (1–255 bytes, not starting with 0). Set before connect.
    public func setRoutingID(_ id: [UInt8]) throws { try setBytesOption(ZMQ_ROUTING_ID, id, name: "ZMQ_ROUTING_ID") }
    public func routingID() throws -> [UInt8] { try bytesOption(ZMQ_ROUTING_ID, name: "ZMQ_ROUTING_ID", capacity: 256) }

    /// The most messages queued for receiving before libzmq stops reading (0: no limit).
    public func setReceiveHighWaterMark(_ messages: Int) throws {
        try setInt32Option(ZMQ_RCVHWM, messages, name: "ZMQ_RCVHWM")
    }
    /// The most messages queued for sending per peer before send blocks or drops (0: no limit).
    public func setSendHighWaterMark(_ messages: Int) throws {
        try setInt32Option(ZMQ_SNDHWM, messages, name: "ZMQ_SNDHWM")
    }

    /// Whether a ROUTER reports EHOSTUNREACH for an unknown peer instead of silently dropping the message.
    public func setRouterMandatory(_ isMandatory: Bool) throws {
        try setInt32Option(ZMQ_ROUTER_MANDATORY, isMandatory ? 1 : 0, name: "ZMQ_ROUTER_MANDATORY")
    }

    /// The largest message accepted from a peer, in bytes (-1: no limit); a bigger one drops the connection.
    public func setMaximumMessageSize(_ bytes: Int64) throws {
        let handle = try openHandle("zmq_setsockopt(ZMQ_MAXMSGSIZE)")
        var value = bytes
        try zmqCall("zmq_setsockopt(ZMQ_MAXMSGSIZE)") {
            zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size)
        }
    }

    /// How long a waiting `send` blocks before giving up with EAGAIN, in ms (-1: forever).
    public func setSendTimeout(milliseconds: Int) throws {
        try setInt32Option(ZMQ_SNDTIMEO, milliseconds, name: "ZMQ_SNDTIMEO")
    }

    /// libzmq's own reconnect backoff for connect()ed sockets, in ms (the protocol adds its own on top).
    public func setReconnectInterval(milliseconds: Int, maximumMilliseconds: Int) throws {
        try setInt32Option(ZMQ_RECONNECT_IVL, milliseconds, name: "ZMQ_RECONNECT_IVL")
        try setInt32Option(ZMQ_RECONNECT_IVL_MAX, maximumMilliseconds, name: "ZMQ_RECONNECT_IVL_MAX")
    }

    /// Queue messages only to completed connections (a DEALER then never queues to a peer not yet there).
    public func setImmediate(_ isImmediate: Bool) throws {
        try setInt32Option(ZMQ_IMMEDIATE, isImmediate ? 1 : 0, name: "ZMQ_IMMEDIATE")
    }

    /// ZMTP-level heartbeats (ZMQ_HEARTBEAT_IVL/TIMEOUT/TTL, in ms): libzmq drops a dead TCP connection
    /// by itself. The protocol's own heartbeats still decide liveness; this only cleans up connections.
    public func setTransportHeartbeat(intervalMilliseconds: Int, timeoutMilliseconds: Int, timeToLiveMilliseconds: Int)
        throws
    {
        try setInt32Option(ZMQ_HEARTBEAT_IVL, intervalMilliseconds, name: "ZMQ_HEARTBEAT_IVL")
        try setInt32Option(ZMQ_HEARTBEAT_TIMEOUT, timeoutMilliseconds, name: "ZMQ_HEARTBEAT_TIMEOUT")
        try setInt32Option(ZMQ_HEARTBEAT_TTL, timeToLiveMilliseconds, name: "ZMQ_HEARTBEAT_TTL")
    }

    // MARK: Raw options

    func setInt32Option(_ option: Int32, _ value: Int, name: String) throws {
        let handle = try openHandle("zmq_setsockopt(\(name))")
        guard let narrow = Int32(exactly: value) else {
            throw ZeroMQError(call: "zmq_setsockopt(\(name), \(value))", code: EINVAL)
        }
        var copy = narrow
        try zmqCall("zmq_setsockopt(\(name), \(value))") {
            zmq_setsockopt(handle, option, &copy, MemoryLayout<Int32>.size)
        }
    }

    func int32Option(_ option: Int32, name: String) throws -> Int {
        let handle = try openHandle("zmq_getsockopt(\(name))")
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try zmqCall("zmq_getsockopt(\(name))") { zmq_getsockopt(handle, option, &value, &size) }
        return Int(value)
    }

    func setBytesOption(_ option: Int32, _ bytes: [UInt8], name: String) throws {
        let handle = try openHandle("zmq_setsockopt(\(name))")
        try zmqCall("zmq_setsockopt(\(name))") {
            bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        }
    }

    func bytesOption(_ option: Int32, name: String, capacity: Int) throws -> [UInt8] {
        let handle = try openHandle("zmq_getsockopt(\(name))")
        var buffer = [UInt8](repeating: 0, count: capacity)
        var size = capacity
        try zmqCall("zmq_getsockopt(\(name))") {
            buffer.withUnsafeMutableBytes { zmq_getsockopt(handle, option, $0.baseAddress, &size) }
        }
        return Array(buffer.prefix(size))
    }
}
