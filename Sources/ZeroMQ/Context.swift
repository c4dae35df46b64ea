// Library-wide facts about the linked libzmq.
import CZeroMQ

/// Facts about the libzmq this binary is linked against.
public enum ZeroMQLibrary {
    /// The (major, minor, patch) version of libzmq.
    public static var version: (major: Int, minor: Int, patch: Int) {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }

    /// Whether libzmq was built with a capability such as "curve" or "ipc".
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }
}
