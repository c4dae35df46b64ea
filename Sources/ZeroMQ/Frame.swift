// One frame of a multipart message held in a libzmq message (zmq_msg_t), so that bytes are copied at
// most once between the program's arrays and the wire. A received frame is read where libzmq put it;
// a frame to send is filled in place; one frame may be sent to many peers without another copy
// (libzmq shares the buffer of a large message and counts its references).
import CZeroMQ

/// One frame held in a libzmq message. Immutable once made; released when the last reference goes.
public final class Frame {
    var message = zmq_msg_t()

    /// A frame of `byteCount` bytes, written by `fill` (which must initialise all of them).
    public init(byteCount: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) {
        // zmq_msg_init_size fails only when memory runs out, which Swift treats as fatal too.
        precondition(zmq_msg_init_size(&message, byteCount) == 0, "zmq_msg_init_size(\(byteCount)) failed")
        if byteCount > 0 { fill(UnsafeMutableRawBufferPointer(start: zmq_msg_data(&message), count: byteCount)) }
    }

    /// A frame whose bytes are `array`'s own storage, not a copy: the frame keeps the array's buffer
    /// alive, and libzmq releases it (from any thread) when the last send of the frame is done.
    ///
    /// The bytes cannot change under libzmq: a Swift array is copied on write, so whoever mutates their
    /// copy of `array` while the frame still holds the buffer writes to a fresh buffer instead.
    public init<Element: BitwiseCopyable>(sharing array: [Element]) {
        let byteCount = array.count * MemoryLayout<Element>.stride
        guard byteCount > 0 else {
            zmq_msg_init(&message)
            return
        }
        let keeper = ArrayKeeper(array)
        // A native array's elements stay where they are for as long as the keeper holds the buffer
        // unmutated, so the address outlives the closure that yields it.
        let base = keeper.array.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
        let hint = Unmanaged.passRetained(keeper as AnyObject).toOpaque()
        let status = zmq_msg_init_data(
            &message, base, byteCount,
            { _, hint in
                if let hint { Unmanaged<AnyObject>.fromOpaque(hint).release() }
            }, hint)
        // zmq_msg_init_data fails only when memory runs out, which Swift treats as fatal too.
        precondition(status == 0, "zmq_msg_init_data(\(byteCount)) failed")
    }

    /// A frame holding a copy of `bytes`.
    public convenience init(_ bytes: [UInt8]) {
        self.init(byteCount: bytes.count) { target in bytes.withUnsafeBytes { target.copyMemory(from: $0) } }
    }

    /// Takes over a received message (leaving `received` empty).
    init(taking received: inout zmq_msg_t) {
        zmq_msg_init(&message)
        zmq_msg_move(&message, &received)
    }

    deinit { zmq_msg_close(&message) }

    /// The frame's length in bytes.
    public var byteCount: Int { zmq_msg_size(&message) }

    /// Calls `body` with the frame's bytes (valid only during the call).
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        let count = zmq_msg_size(&message)
        guard count > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: zmq_msg_data(&message), count: count))
    }

    /// A property of the connection the frame came over (zmq_msg_gets), such as "User-Id" (what the
    /// authenticator said of the peer) or "Peer-Address"; nil if libzmq has none.
    public func property(_ name: String) -> String? {
        guard let value = zmq_msg_gets(&message, name) else { return nil }
        return String(cString: value)
    }

    /// A copy of the frame's bytes.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}

/// Holds an array's buffer for a frame that shares it (`Frame(sharing:)`).
private final class ArrayKeeper<Element> {
    let array: [Element]
    init(_ array: [Element]) { self.array = array }
}
