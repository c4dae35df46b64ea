// Warnings about what peers send, limited per peer: a peer that floods junk or keeps knocking with a
// refused key costs one log line per window, plus a count of what was held back, never a line per
// message. Thread-safe: the coordinator's ZAP handler and its polling thread share one.
import Foundation

/// Decides which warnings about a peer reach the log.
// @unchecked Sendable: all state is read and written under `lock`.
public final class WarningLimiter: @unchecked Sendable {
    private struct Window {
        var start: Double
        var heldBack = 0
    }

    public let windowSeconds: Double
    private let maximumPeers: Int
    private let clock: @Sendable () -> Double
    private let lock = NSLock()
    private var windows: [String: Window] = [:]

    /// - Parameters:
    ///   - windowSeconds: at most one warning per peer in this long.
    ///   - maximumPeers: peers remembered at once; beyond it the oldest windows are forgotten (memory
    ///     stays bounded however many addresses a flood comes from).
    public init(
        windowSeconds: Double = 60, maximumPeers: Int = 1024,
        clock: @escaping @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    ) {
        self.windowSeconds = windowSeconds
        self.maximumPeers = maximumPeers
        self.clock = clock
    }

    /// The line to log now for a warning about `peer`, or nil to hold it back. The first warning of a
    /// window is logged; the first after the window also says how many were held back meanwhile.
    public func admit(_ message: String, about peer: String) -> String? {
        let now = clock()
        lock.lock()
        defer { lock.unlock() }
        if var window = windows[peer], now - window.start < windowSeconds {
            window.heldBack += 1
            windows[peer] = window
            return nil
        }
        let heldBack = windows[peer]?.heldBack ?? 0
        if windows[peer] == nil, windows.count >= maximumPeers {
            let oldest = windows.min { $0.value.start < $1.value.start }?.key
            if let oldest { windows.removeValue(forKey: oldest) }
        }
        windows[peer] = Window(start: now)
        guard heldBack > 0 else { return message }
        return "\(message) (\(heldBack) more like it from \(peer) held back in the last "
            + "\(Int(windowSeconds.rounded())) s)"
    }
}
