// Small pieces shared by the coordinator and worker nodes: a monotonic clock, a thread-safe stop
// request, and the tick pacing that turns wall time into the state machines' ticks.
// Deliberately no sockets and no protocol logic here.
import Foundation

/// Seconds on a monotonic clock (unaffected by wall-clock changes); only differences mean anything.
func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// A stop request that any thread (a signal handler's queue, a test) may set and the node's thread reads.
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var storedReason: String?

    /// Records the first reason; later requests keep the first one.
    func request(_ reason: String) {
        lock.lock()
        defer { lock.unlock() }
        if storedReason == nil { storedReason = reason }
    }

    /// The reason, if a stop was requested.
    var reason: String? {
        lock.lock()
        defer { lock.unlock() }
        return storedReason
    }
}

/// Delivers ticks at a fixed wall-time interval: `dueTicks()` says how many ticks passed since the
/// last call (0 or more; after a long pause at most `maximumCatchUp`, so a stalled node does not
/// fire a burst that would declare every peer dead at once).
struct TickPacer {
    let interval: Double
    private var next: Double
    private let maximumCatchUp: Int

    init(milliseconds: Int, maximumCatchUp: Int = 3) {
        interval = Double(max(1, milliseconds)) / 1000
        next = monotonicSeconds() + interval
        self.maximumCatchUp = maximumCatchUp
    }

    /// Milliseconds until the next tick is due (0 if it is due now): the poll timeout.
    var millisecondsUntilDue: Int { max(0, Int(((next - monotonicSeconds()) * 1000).rounded(.up))) }

    mutating func dueTicks() -> Int {
        let now = monotonicSeconds()
        guard now >= next else { return 0 }
        let due = Int((now - next) / interval) + 1
        next += Double(due) * interval
        return min(due, maximumCatchUp)
    }
}
