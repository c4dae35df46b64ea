// The step timeline of a distributed run (`--trace FILE`), in the Chrome trace event format that
// Perfetto and chrome://tracing open: the coordinator's spans (send weights, wait, average, apply,
// evaluate, checkpoint) and each worker's (send weights, compute, send gradient, wait), one process
// row each, with the workers' clocks aligned to the coordinator's as NTP does it.
//
// Alignment: each step/gradient exchange is one NTP sample. The coordinator sent the step at T0 and
// received the gradient at T3 (its clock); the worker received the step at t1 and sent the gradient at
// t2 (its clock, `WorkerTiming`). Offset θ = ((t1 - T0) + (t2 - T3)) / 2, round-trip delay
// δ = (T3 - T0) - (t2 - t1). Per worker, the θ of the exchange with the smallest δ over the run is kept
// (NTP's clock filter: the least-delayed sample has the least room for asymmetry), and a worker time w
// is drawn at w - θ. Monotonic clocks drift by parts per million: over a run, well under a step.
import DataParallel
import Foundation

/// Collects a coordinator's step timings and writes them as a Chrome trace.
// @unchecked Sendable: everything is read and written under `lock`.
public final class TraceRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var steps: [(step: Int, timing: StepTiming)] = []
    private var names: [PeerID: String] = [:]
    private var order: [PeerID] = []
    private var evaluations: [(epoch: Int, start: Double, seconds: Double)] = []
    private var checkpoints: [(step: Int, start: Double, end: Double)] = []
    /// Steps kept at most (a run longer than this keeps its first steps only; about 1 kB each).
    public let stepLimit: Int

    public init(stepLimit: Int = 200_000) { self.stepLimit = stepLimit }

    /// Takes what a timeline needs from a coordinator-node event.
    public func record(_ event: CoordinatorNodeEvent) {
        lock.withLock {
            switch event {
            case .workerJoined(let info, _, _, _, let workers):
                for worker in workers + [info] where names[worker.peer] == nil {
                    names[worker.peer] = worker.name
                    order.append(worker.peer)
                }
            case .stepCompleted(let metrics):
                if let timing = metrics.timing, steps.count < stepLimit { steps.append((metrics.step, timing)) }
            case .epochCompleted(let epoch, let evaluation):
                if let evaluation, let start = evaluation.startedAt {
                    evaluations.append((epoch, start, evaluation.seconds))
                }
            default:
                break
            }
        }
    }

    /// A checkpoint after `step`, written between `start` and `end` (seconds, the same clock).
    public func recordCheckpoint(step: Int, start: Double, end: Double) {
        lock.withLock { checkpoints.append((step, start, end)) }
    }

    /// Each worker's clock offset (seconds, worker minus coordinator) and the round-trip delay of the
    /// sample it came from; workers that never reported timing are absent.
    public func offsets() -> [PeerID: (offset: Double, delay: Double)] {
        lock.withLock { Self.offsets(steps.map(\.timing)) }
    }

    static func offsets(_ timings: [StepTiming]) -> [PeerID: (offset: Double, delay: Double)] {
        var best: [PeerID: (offset: Double, delay: Double)] = [:]
        for timing in timings {
            for (peer, exchange) in timing.workers {
                guard let t0 = exchange.stepSent, let t3 = exchange.arrived, let reported = exchange.reported else {
                    continue
                }
                let t1 = Double(reported.received) / 1e9, t2 = Double(reported.sent) / 1e9
                let delay = (t3 - t0) - (t2 - t1)
                let offset = ((t1 - t0) + (t2 - t3)) / 2
                if best[peer].map({ delay < $0.delay }) ?? true { best[peer] = (offset, delay) }
            }
        }
        return best
    }

    /// The trace as Chrome trace event JSON: `{"traceEvents": [...], "displayTimeUnit": "ms", ...}`.
    public func json() throws -> Data {
        let (steps, names, order, evaluations, checkpoints) = lock.withLock {
            (self.steps, self.names, self.order, self.evaluations, self.checkpoints)
        }
        let offsets = Self.offsets(steps.map(\.timing))
        let origin = steps.first?.timing.broadcastStarted ?? 0
        var events: [[String: Any]] = []
        func microseconds(_ seconds: Double) -> Double { ((seconds - origin) * 1e6).rounded() }
        func span(_ name: String, _ start: Double, _ end: Double, pid: Int, tid: Int = 1, args: [String: Any]) {
            events.append([
                "name": name, "cat": "step", "ph": "X", "pid": pid, "tid": tid, "ts": microseconds(start),
                "dur": max(0, microseconds(end) - microseconds(start)), "args": args,
            ])
        }
        func metadata(_ name: String, pid: Int, tid: Int? = nil, value: String) {
            var event: [String: Any] = ["name": name, "ph": "M", "pid": pid, "args": ["name": value]]
            if let tid { event["tid"] = tid }
            events.append(event)
        }
        metadata("process_name", pid: 1, value: "coordinator")
        metadata("thread_name", pid: 1, tid: 1, value: "steps")
        metadata("thread_name", pid: 1, tid: 2, value: "evaluation")
        var pids: [PeerID: Int] = [:]
        for peer in order + steps.flatMap({ $0.timing.workers.keys }) where pids[peer] == nil {
            pids[peer] = pids.count + 2
            let offset = offsets[peer].map { String(format: ", clock offset %.6f s", $0.offset) } ?? ""
            metadata("process_name", pid: pids.count + 1, value: "worker \(names[peer] ?? "\(peer)")\(offset)")
        }
        for (step, timing) in steps {
            let args: [String: Any] = ["step": step]
            span("send weights", timing.broadcastStarted, timing.broadcastEnded, pid: 1, args: args)
            span("wait", timing.broadcastEnded, max(timing.broadcastEnded, timing.lastArrival), pid: 1, args: args)
            span("average", max(timing.broadcastEnded, timing.lastArrival), timing.gathered, pid: 1, args: args)
            span("apply", timing.gathered, timing.applied, pid: 1, args: args)
            for (peer, exchange) in timing.workers {
                guard let pid = pids[peer], let sent = exchange.stepSent, let arrived = exchange.arrived,
                    let reported = exchange.reported, let offset = offsets[peer]?.offset
                else { continue }
                let received = Double(reported.received) / 1e9 - offset
                let answered = Double(reported.sent) / 1e9 - offset
                span("send weights", sent, received, pid: pid, args: args)
                span("compute", received, answered, pid: pid, args: args)
                span("send gradient", answered, arrived, pid: pid, args: args)
                span("wait", arrived, timing.applied, pid: pid, args: args)
            }
        }
        for evaluation in evaluations {
            span(
                "evaluate", evaluation.start, evaluation.start + evaluation.seconds, pid: 1, tid: 2,
                args: ["epoch": evaluation.epoch + 1])
        }
        for checkpoint in checkpoints {
            span("checkpoint", checkpoint.start, checkpoint.end, pid: 1, args: ["step": checkpoint.step])
        }
        let offsetsByName = Dictionary(
            offsets.map {
                (names[$0.key] ?? "\($0.key)", ["offset_seconds": $0.value.offset, "delay_seconds": $0.value.delay])
            },
            uniquingKeysWith: { first, _ in first })
        return try JSONSerialization.data(
            withJSONObject: [
                "traceEvents": events, "displayTimeUnit": "ms",
                "otherData": ["clock_alignment": "NTP, least-delay exchange per worker", "workers": offsetsByName],
            ], options: [.sortedKeys])
    }

    /// Writes `json()` to `url`, whole or not at all.
    public func write(to url: URL) throws {
        try json().write(to: url, options: .atomic)
    }
}
