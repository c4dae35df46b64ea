// Placeholder: the protocol lands here.
public enum ProtocolInfo { public static let version: UInt16 = 1 }
