// CURVE security (CurveZMQ): key pairs and the options that make a socket a CURVE server or client.
// Keys are Z85 text, 40 characters, as printed by libzmq's curve_keygen. Storing and distributing
// keys is the caller's business; nothing here touches files. Who may connect is decided by a ZAP
// handler (Authenticator.swift); without one, a CURVE server accepts any client key.
import CZeroMQ

/// A CURVE key pair in Z85 text (40 characters each).
public struct CurveKeyPair: Sendable, Equatable {
    public var publicKey: String
    public var secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// The pair of a secret key, its public key derived with zmq_curve_public. Throws a `ZeroMQError`
    /// (EINVAL) if `secretKey` is not a Z85 key.
    public init(secretKey: String) throws {
        guard CurveKey.isValid(secretKey) else { throw ZeroMQError(call: "zmq_curve_public", code: EINVAL) }
        var publicKey = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_public") { zmq_curve_public(&publicKey, secretKey) }
        self.init(publicKey: CurveKey.text(publicKey), secretKey: secretKey)
    }

    /// Generates a fresh key pair with zmq_curve_keypair (needs libzmq built with CURVE; see `ZeroMQLibrary.has("curve")`).
    public static func generate() throws -> CurveKeyPair {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_keypair") { zmq_curve_keypair(&publicKey, &secretKey) }
        return CurveKeyPair(publicKey: CurveKey.text(publicKey), secretKey: CurveKey.text(secretKey))
    }
}

/// Z85 text of CURVE keys.
public enum CurveKey {
    /// The length of a key in Z85 text.
    public static let textLength = 40

    /// Whether `text` is a 32-byte key in Z85 (40 characters of the Z85 alphabet).
    public static func isValid(_ text: String) -> Bool { bytes(text) != nil }

    /// The 32 bytes of a Z85 key, or nil if `text` is not one.
    public static func bytes(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count == textLength, utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else { return nil }
        var decoded = [UInt8](repeating: 0, count: 32)
        let ok = decoded.withUnsafeMutableBufferPointer { zmq_z85_decode($0.baseAddress, text) != nil }
        return ok ? decoded : nil
    }

    /// The Z85 text of a 32-byte key (as ZAP hands a client's key over), or nil for another length.
    public static func text(_ bytes: [UInt8]) -> String? {
        guard bytes.count == 32 else { return nil }
        var encoded = [CChar](repeating: 0, count: textLength + 1)
        let ok = encoded.withUnsafeMutableBufferPointer { buffer in
            bytes.withUnsafeBufferPointer { zmq_z85_encode(buffer.baseAddress, $0.baseAddress, 32) != nil }
        }
        return ok ? text(encoded) : nil
    }

    static func text(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix(textLength).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Socket {
    /// Makes this socket a CURVE server with `secretKey` (its own; clients must know its public key).
    /// Connections are then authenticated by the context's ZAP handler for `domain`, which must be
    /// running before bind (libzmq lets every client in while no handler is there). Call before bind.
    public func makeCurveServer(secretKey: String, domain: String = Authenticator.defaultDomain) throws {
        try setInt32Option(ZMQ_CURVE_SERVER, 1, name: "ZMQ_CURVE_SERVER")
        try setBytesOption(ZMQ_CURVE_SECRETKEY, Array(secretKey.utf8), name: "ZMQ_CURVE_SECRETKEY")
        try setBytesOption(ZMQ_ZAP_DOMAIN, Array(domain.utf8), name: "ZMQ_ZAP_DOMAIN")
    }

    /// Makes this socket a CURVE client of the server whose public key is `serverPublicKey`, using the
    /// client's own key pair. Call before connect.
    public func makeCurveClient(serverPublicKey: String, keyPair: CurveKeyPair) throws {
        try setBytesOption(ZMQ_CURVE_SERVERKEY, Array(serverPublicKey.utf8), name: "ZMQ_CURVE_SERVERKEY")
        try setBytesOption(ZMQ_CURVE_PUBLICKEY, Array(keyPair.publicKey.utf8), name: "ZMQ_CURVE_PUBLICKEY")
        try setBytesOption(ZMQ_CURVE_SECRETKEY, Array(keyPair.secretKey.utf8), name: "ZMQ_CURVE_SECRETKEY")
    }
}
