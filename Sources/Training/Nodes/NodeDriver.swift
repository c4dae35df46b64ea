// What the coordinator and worker nodes share: the one event loop (`NodeDriver` over a `NodeRole`),
// a monotonic clock, a thread-safe stop request, and the tick pacing that turns wall time into the
// state machines' ticks. No protocol logic here: that is in the state machines.
import DataParallel
import Foundation
import Host
import ZeroMQ

/// Seconds on a monotonic clock (unaffected by wall-clock changes); only differences mean anything.
func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

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

/// What a node does with its state machine; `NodeDriver` runs the loop around it. A role says which
/// sockets to wait on, turns what arrived into events, and performs the machine's actions; the loop
/// (poll until the next tick, feed arrivals, feed due ticks, deliver a stop once, flush) is shared.
protocol NodeRole {
    associatedtype Event
    /// The run's outcome once decided; the loop ends then.
    var outcome: NodeOutcome? { get set }
    /// The sockets to wait on until the next tick; empty ends the run.
    var pollItems: [(socket: Socket, events: PollEvents)] { get }
    /// The event of one tick.
    var tickEvent: Event { get }
    /// The event that tells the machine the run is being stopped for `reason`.
    func stopEvent(reason: String) -> Event
    /// The next event from what has arrived (decoded messages, finished work), or nil when none is left.
    mutating func nextEvent() throws -> Event?
    /// Feeds `event` to the machine and performs the actions it returns.
    mutating func handle(_ event: Event) throws
    /// Set when the node must vanish at once, as a killed process would (a test hook): no flush.
    var vanishReason: String? { get }
    /// After the loop: lets queued messages leave, then closes the sockets.
    mutating func finish()
}

/// The one event loop of the coordinator and worker nodes (as etcd's raft has one RawNode): every
/// poll has a timeout (the time to the next tick), a stop request is delivered once, and the node
/// always finishes.
enum NodeDriver {
    /// Runs `role` until it has an outcome, a stop is requested (`stop`), or it must vanish.
    static func run<Role: NodeRole>(_ role: inout Role, tickMilliseconds: Int, stop: StopRequest) throws
        -> NodeOutcome
    {
        var pacer = TickPacer(milliseconds: tickMilliseconds)
        while role.outcome == nil {
            if let reason = role.vanishReason { return .failed(reason: reason) }
            if let reason = stop.reason {
                try role.handle(role.stopEvent(reason: reason))
                if role.outcome == nil { role.outcome = .failed(reason: "stopped: \(reason)") }
                break
            }
            let items = role.pollItems
            guard !items.isEmpty else { break }
            _ = try Socket.poll(items, timeoutMilliseconds: pacer.millisecondsUntilDue)
            while role.outcome == nil, let event = try role.nextEvent() { try role.handle(event) }
            for _ in 0..<pacer.dueTicks() where role.outcome == nil { try role.handle(role.tickEvent) }
        }
        if let reason = role.vanishReason { return .failed(reason: reason) }
        role.finish()
        return role.outcome ?? .failed(reason: "the node ended without an outcome")
    }

    /// Keeps `socket` open for `milliseconds`, reading and dropping what arrives, so that queued
    /// messages (shutdown, goodbye) leave before it closes (sockets linger 0).
    static func flush(_ socket: Socket, milliseconds: Int) {
        let deadline = monotonicSeconds() + Double(milliseconds) / 1000
        while monotonicSeconds() < deadline {
            let left = Int(((deadline - monotonicSeconds()) * 1000).rounded(.up))
            _ = try? socket.poll(.readable, timeoutMilliseconds: min(left, 50))
            while let frames = try? socket.receiveFrames() { _ = frames }
        }
    }
}
