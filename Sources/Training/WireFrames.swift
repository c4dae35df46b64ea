// Between the codec and the sockets: messages become ZeroMQ frames (weights and gradients without a
// copy, other payloads with one), and received frames are decoded where libzmq left them. The
// coordinator sends the same weights to every worker each step, so their frame is made once per step
// and shared (libzmq counts its references).
import DataParallel
import ZeroMQ

extension Frame: WireFrame {}

extension Frame {
    /// A frame holding `payload`. Weights and gradients go out of their arrays' own storage where the
    /// wire's little-endian layout is the machine's; everything else is written into libzmq's buffer.
    convenience init(payload: WirePayload) {
        #if _endian(little)
            if case .floats(let values) = payload, payload.byteCount >= Frame.sharingThreshold {
                self.init(sharing: values)
                return
            }
        #endif
        self.init(byteCount: payload.byteCount, fill: payload.write(to:))
    }

    /// Below this many bytes a copy costs less than sharing a buffer (a reference count and a callback).
    static let sharingThreshold = 16 * 1024
}

/// Encodes messages into frames for either node, reusing the weights frame of a step for every worker it
/// goes to.
struct FrameEncoder {
    private var weights: (step: Int, frame: Frame)?

    mutating func frames(of message: Message) -> [Frame] {
        let payloads = message.encodedPayloads()
        guard case .step(let assignment) = message else { return payloads.map(Frame.init(payload:)) }
        // Frame 1 of a step message is its weights, the same for every worker within a step.
        let shared: Frame
        if let cached = weights, cached.step == assignment.step, cached.frame.byteCount == payloads[1].byteCount {
            shared = cached.frame
        } else {
            shared = Frame(payload: payloads[1])
            weights = (assignment.step, shared)
        }
        return payloads.indices.map { $0 == 1 ? shared : Frame(payload: payloads[$0]) }
    }

    /// Lets go of the step's weights frame, which may share the model's parameters: call it before
    /// updating them, so that they are updated in place and not copied on write.
    mutating func releaseWeights() { weights = nil }
}
