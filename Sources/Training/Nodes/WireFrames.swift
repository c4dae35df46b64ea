// Between the codec and the sockets: messages become ZeroMQ frames, and received frames are decoded
// where libzmq left them. Large payloads are not copied: their frames share the arrays' storage, so the
// coordinator's one weights array goes to every worker of a step as it is.
import DataParallel
import ZeroMQ

extension Frame: WireFrame {}

extension Frame {
    /// A frame holding `payload`. Payloads of `sharingThreshold` bytes or more go out of their arrays'
    /// own storage (arrays of 4-byte numbers only where the wire's little-endian layout is the
    /// machine's); smaller ones are copied into libzmq's buffer.
    convenience init(payload: WirePayload) {
        #if _endian(little)
            let numbersAsStored = payload.byteCount >= Frame.sharingThreshold
        #else
            let numbersAsStored = false
        #endif
        switch payload {
        case .bytes(let bytes) where bytes.count >= Frame.sharingThreshold: self.init(sharing: bytes)
        case .floats(let values) where numbersAsStored: self.init(sharing: values)
        case .uint32s(let values) where numbersAsStored: self.init(sharing: values)
        default: self.init(byteCount: payload.byteCount, fill: payload.write(to:))
        }
    }

    /// Below this many bytes a copy costs less than sharing a buffer (a reference count and a callback).
    static let sharingThreshold = 16 * 1024
}

extension Message {
    /// The message as ZeroMQ frames (see `Frame(payload:)`).
    var frames: [Frame] { encodedPayloads().map(Frame.init(payload:)) }
}
