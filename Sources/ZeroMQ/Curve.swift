// CURVE security (CurveZMQ): key pairs and the options that make a socket a CURVE server or client.
// Keys are Z85 text, 40 characters, as printed by libzmq's curve_keygen. Storing and distributing
// keys is the caller's business; nothing here touches files.
import CZeroMQ

/// A CURVE key pair in Z85 text (40 characters each).
public struct CurveKeyPair: Sendable, Equatable {
    public var publicKey: String
    public var secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Generates a fresh key pair with zmq_curve_keypair (needs libzmq built with CURVE; see `ZeroMQLibrary.has("curve")`).
    public static func generate() throws -> CurveKeyPair {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_keypair") { zmq_curve_keypair(&publicKey, &secretKey) }
        return CurveKeyPair(
            publicKey: String(decoding: publicKey.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self),
            secretKey: String(decoding: secretKey.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}

extension Socket {
    /// Makes this socket a CURVE server with `secretKey` (its own; clients must know its public key).
    /// Call before bind.
    public func makeCurveServer(secretKey: String) throws {
        try setInt32Option(ZMQ_CURVE_SERVER, 1, name: "ZMQ_CURVE_SERVER")
        try setBytesOption(ZMQ_CURVE_SECRETKEY, Array(secretKey.utf8), name: "ZMQ_CURVE_SECRETKEY")
    }

    /// Makes this socket a CURVE client of the server whose public key is `serverPublicKey`, using the
    /// client's own key pair. Call before connect.
    public func makeCurveClient(serverPublicKey: String, keyPair: CurveKeyPair) throws {
        try setBytesOption(ZMQ_CURVE_SERVERKEY, Array(serverPublicKey.utf8), name: "ZMQ_CURVE_SERVERKEY")
        try setBytesOption(ZMQ_CURVE_PUBLICKEY, Array(keyPair.publicKey.utf8), name: "ZMQ_CURVE_PUBLICKEY")
        try setBytesOption(ZMQ_CURVE_SECRETKEY, Array(keyPair.secretKey.utf8), name: "ZMQ_CURVE_SECRETKEY")
    }
}
