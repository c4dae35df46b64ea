// A fresh folder that only this user may enter (mkdtemp: mode 0700), for files such as Unix-domain
// sockets that other users of the machine must not reach.
import Foundation

/// A new private folder under the temporary directory, removed with its contents by `remove()`.
public struct PrivateFolder: Sendable {
    public let url: URL

    /// Makes `$TMPDIR/PREFIX-XXXXXX`, mode 0700.
    public init(prefix: String) throws {
        var template = Array(
            FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-XXXXXX").path.utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard made != nil else {
            throw CocoaError(
                .fileWriteUnknown,
                userInfo: [NSLocalizedDescriptionKey: "mkdtemp: \(String(cString: strerror(errno)))"])
        }
        url = URL(fileURLWithPath: String(cString: template.map { $0 }), isDirectory: true)
    }

    /// Removes the folder and everything in it (errors are ignored: it is in the temporary directory).
    public func remove() { try? FileManager.default.removeItem(at: url) }
}
