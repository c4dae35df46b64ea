// What the live dashboard knows about a run, built from the run's events. The training thread hands
// each event to `record` and returns at once: the lock is held only to update a few small arrays, and
// the HTTP side holds it only to take a copy of the state (arrays are shared, not copied) that it then
// encodes on its own time. Nothing here ever waits for a browser.
import ConvNet
import DataParallel
import Foundation
import MNIST
import Training

/// The state the page shows, as JSON.
public struct DashboardState: Encodable, Sendable {
    /// Changes whenever anything else does (the event stream sends a new state then).
    public var version = 0
    /// waiting (for workers or the first step), training, finished, stopped.
    public var status = "waiting"
    public var run = RunInfo()
    public var progress = Progress()
    public var curves = Curves()
    public var workers: [WorkerRow] = []
    public var log: [LogEntry] = []
    public var evaluation: EvaluationView?
    /// The step of the weights the draw box asks (nil before the first step).
    public var modelStep: Int?

    public struct RunInfo: Encodable, Sendable {
        /// single (one process) or coordinator.
        public var mode = "single"
        public var model = ""
        public var parameters = 0
        public var trainImages = 0
        public var testImages = 0
        public var stepsPerEpoch = 0
        public var totalSteps = 0
        public var epochs = 0
        /// The training configuration, as shown: flag name to value.
        public var configuration: [String: String] = [:]
        /// The bytes of one step's messages, for a coordinator (nil for one process).
        public var bytesPerStep: Int?
    }

    public struct Progress: Encodable, Sendable {
        public var step = 0
        public var epoch = 0
        public var loss: Double?
        public var learningRate: Double?
        public var imagesPerSecond: Double?
        public var trainingSeconds = 0.0
        public var etaSeconds: Double?
        public var testAccuracy: Double?
        public var lastCheckpointStep: Int?
    }

    /// Points as [x, y]: steps for the per-step curves, epochs for the accuracies.
    public struct Curves: Encodable, Sendable {
        public var loss: [[Double]] = []
        public var learningRate: [[Double]] = []
        public var imagesPerSecond: [[Double]] = []
        public var testAccuracy: [[Double]] = []
        public var trainAccuracy: [[Double]] = []
    }

    public struct WorkerRow: Encodable, Sendable {
        public var name: String
        /// Its routing id, and the address it connected from (an IP over tcp; over ipc libzmq gives
        /// "localhost:UID:GID:PID").
        public var peer: String
        public var address: String
        /// training, spare, lost (died, left or silent) or evicted (a wrong or late answer).
        public var state: String
        public var slot: Int?
        public var threads: Int
        public var blocks: String
        /// The fraction of the data it computes each step.
        public var share: Double
        public var joinedStep: Int
        /// Seconds since the run started when it was last heard of in an event.
        public var lastSeen: Double
        public var note: String
        /// Per step (a moving average over about 20 steps), milliseconds from the coordinator sending
        /// the step to this worker's gradient (its compute and both transfers), and from then until the
        /// last worker's gradient (waiting for the others).
        public var answerMilliseconds: Double?
        public var waitMilliseconds: Double?
        /// The answer split by the worker's own timing (protocol version 4): computing (from receiving
        /// the step to sending the gradient, on its clock) and the rest (both transfers).
        public var computeMilliseconds: Double?
        public var transferMilliseconds: Double?
    }

    public struct LogEntry: Encodable, Sendable {
        /// Seconds since the dashboard started.
        public var time: Double
        /// info, warning
        public var level: String
        public var text: String
    }

    public struct EvaluationView: Encodable, Sendable {
        public var epoch: Int
        public var accuracy: Double
        public var loss: Double
        /// confusion[true][predicted]
        public var confusion: [[Int]]
        public var mistakes: [Evaluation.Mistake]
    }
}

/// Collects a run's events for the dashboard. Thread-safe; `record` is cheap.
public final class TrainingMonitor: @unchecked Sendable {
    private let lock = NSLock()
    private var state = DashboardState()
    private let started = Date()
    /// Curve points are averaged over this many steps (set from the run's length: about 500 points).
    private var stride = 1
    private var pending = (steps: 0, loss: 0.0)
    private var snapshot: ModelSnapshot?
    private var lastSnapshotKept = Date.distantPast
    private var built: (step: Int, ensemble: Ensemble)?
    private var lastBuilt = Date.distantPast
    private var lastCheckpointAt: Date?
    private var blockCount = 1
    /// Network addresses by routing id, as the coordinator reported them (at most 4096).
    private var addresses: [String: String] = [:]
    /// The step and traffic total of the last step seen (for bytes per step).
    private var lastBytes = (step: -1, total: 0)
    private let batchSize: Int
    /// The test images, for the gallery of mistakes.
    public let testImages: LabeledImages
    public let metrics: TrainingMetrics

    /// - Parameters:
    ///   - mode: "single" or "coordinator".
    ///   - configuration: shown on the page.
    public init(mode: String, configuration: TrainingConfiguration, testImages: LabeledImages) {
        self.testImages = testImages
        metrics = TrainingMetrics()
        batchSize = configuration.batchSize
        state.run.mode = mode
        state.run.epochs = configuration.epochs
        state.run.configuration = Self.describe(configuration)
    }

    /// The state as it stands (a copy; the arrays are shared until the next event changes them).
    public var current: DashboardState { lock.withLock { state } }

    /// The version of the state, for the event stream's polling.
    public var version: Int { lock.withLock { state.version } }

    /// Seconds since the last checkpoint was written (nil: none yet).
    public var checkpointAge: Double? { lock.withLock { lastCheckpointAt.map { Date().timeIntervalSince($0) } } }

    @discardableResult
    private func change<Result>(_ body: (inout DashboardState) -> Result) -> Result {
        lock.withLock {
            let result = body(&state)
            state.version += 1
            return result
        }
    }

    /// An exponential moving average over about 20 values.
    static func average(_ previous: Double?, _ value: Double) -> Double {
        previous.map { $0 + (value - $0) / 20 } ?? value
    }

    /// Adds a line to `state`'s log (the state being changed; never `self.state` directly, which
    /// `change` holds).
    private func note(_ state: inout DashboardState, _ text: String, level: String = "info") {
        state.log.append(.init(time: Date().timeIntervalSince(started), level: level, text: text))
        if state.log.count > 300 { state.log.removeFirst(state.log.count - 300) }
    }

    /// Adds a line to the page's log (from the CLI: warnings, the model file written...).
    public func log(_ text: String, level: String = "info") {
        change { note(&$0, text, level: level) }
    }

    /// The run has ended: finished (the model is written) or stopped.
    public func finish(_ status: String, _ text: String) {
        change {
            $0.status = status
            note(&$0, text, level: status == "finished" ? "info" : "warning")
        }
    }

    // MARK: - Training events

    public func record(_ event: TrainingEvent) {
        switch event {
        case .started(let model, let parameterCount, let trainCount, let testCount, let stepsPerEpoch, let totalSteps):
            change {
                $0.status = "training"
                $0.run.model = model
                $0.run.parameters = parameterCount
                $0.run.trainImages = trainCount
                $0.run.testImages = testCount
                $0.run.stepsPerEpoch = stepsPerEpoch
                $0.run.totalSteps = totalSteps
                stride = max(1, totalSteps / 500)
                note(&$0, "training \(model): \(parameterCount) parameters, \(totalSteps) steps")
            }
            metrics.parameters.set(Double(parameterCount))
        case .batchCompleted(let progress):
            metrics.recordStep(progress)
            change {
                let first = (progress.step - 1) * batchSize
                metrics.recordSamples(max(0, min(batchSize, $0.run.trainImages - first)))
                $0.status = "training"
                $0.progress.step = progress.globalStep
                $0.progress.epoch = progress.epoch
                $0.progress.loss = progress.loss
                $0.progress.learningRate = progress.learningRate
                $0.progress.imagesPerSecond = progress.imagesPerSecond
                $0.progress.trainingSeconds = progress.trainingSeconds
                let perStep = progress.trainingSeconds / Double(max(1, progress.globalStep))
                $0.progress.etaSeconds = perStep * Double(progress.totalSteps - progress.globalStep)
                pending.steps += 1
                pending.loss += progress.loss
                if pending.steps >= stride || progress.globalStep == progress.totalSteps {
                    let x = Double(progress.globalStep)
                    $0.curves.loss.append([x, pending.loss / Double(pending.steps)])
                    $0.curves.learningRate.append([x, progress.learningRate])
                    $0.curves.imagesPerSecond.append([x, progress.imagesPerSecond])
                    pending = (0, 0)
                }
            }
        case .modelUpdated(let snapshot):
            // Kept at most once a second: holding the trainer's arrays costs it a copy at its next update.
            let now = Date()
            lock.withLock {
                guard now.timeIntervalSince(lastSnapshotKept) >= 1 || self.snapshot == nil else { return }
                self.snapshot = snapshot
                lastSnapshotKept = now
                state.modelStep = snapshot.step
            }
        case .evaluated(let epoch, let evaluation):
            metrics.testAccuracy.set(evaluation.accuracy)
            change {
                $0.evaluation = .init(
                    epoch: epoch, accuracy: evaluation.accuracy, loss: evaluation.meanLoss,
                    confusion: evaluation.confusion, mistakes: evaluation.mistakes)
            }
        case .epochCompleted(let summary):
            metrics.epoch.set(Double(summary.epoch))
            change {
                $0.progress.testAccuracy = summary.testAccuracy
                $0.curves.testAccuracy.append([Double(summary.epoch), summary.testAccuracy])
                $0.curves.trainAccuracy.append([Double(summary.epoch), summary.trainAccuracy])
                note(
                    &$0,
                    String(
                        format: "epoch %d/%d: test accuracy %.2f%%, loss %.4f, %.1f s", summary.epoch, summary.epochs,
                        summary.testAccuracy * 100, summary.loss, summary.seconds))
            }
        case .checkpointWritten(let step, let path):
            metrics.checkpoints.increment()
            change {
                $0.progress.lastCheckpointStep = step
                lastCheckpointAt = Date()
                note(&$0, "checkpoint after step \(step) written to \(path)")
            }
        }
    }

    // MARK: - Coordinator events

    /// The coordinator's view of its workers (membership, shares, faults).
    public func record(_ event: CoordinatorNodeEvent, blockCount: Int) {
        let now = Date().timeIntervalSince(started)
        switch event {
        case .listening(let endpoint):
            change { note(&$0, "listening on \(endpoint)") }
        case .workerJoined(let info, let joined, let expected, let step, let workers):
            change {
                self.blockCount = max(1, blockCount)
                update(&$0, workers: workers, step: step, now: now)
                upsert(&$0, info, state: info.slot == nil ? "spare" : "training", step: step, now: now, note: "")
                note(&$0, "\(info) joined at step \(step) (\(joined) of \(expected))")
            }
        case .sharesChanged(let workers, let step, let why):
            change {
                update(&$0, workers: workers, step: step, now: now)
                note(&$0, "shares changed at step \(step): \(why)")
            }
        case .workerRefused(let peer, let name, let reason):
            change { note(&$0, "refused \"\(name)\" (\(peer)): \(reason)", level: "warning") }
        case .trainingStarted(let workers):
            change {
                update(&$0, workers: workers, step: 0, now: now)
                note(&$0, "training started with \(workers.count) worker\(workers.count == 1 ? "" : "s")")
            }
        case .stepCompleted(let step):
            metrics.stepSeconds.recordNanoseconds(Int64((step.gatherSeconds + step.applySeconds) * 1e9))
            metrics.recordBytes(sent: step.bytesSent, received: step.bytesReceived)
            // Rows are keyed by the peer's text; each worker's figures are looked up once per step.
            let answers = Dictionary(uniqueKeysWithValues: step.answerSeconds.map { ("\($0.key)", $0.value) })
            let reports = Dictionary(
                uniqueKeysWithValues: (step.timing?.workers ?? [:]).compactMap { peer, exchange in
                    exchange.reported.map { ("\(peer)", $0) }
                })
            let names = change { state -> [(String, Double)] in
                var answered: [(String, Double)] = []
                for index in state.workers.indices {
                    guard let seconds = answers[state.workers[index].peer] else { continue }
                    let wait = max(0, step.gatherSeconds - seconds)
                    state.workers[index].lastSeen = now
                    state.workers[index].answerMilliseconds = Self.average(
                        state.workers[index].answerMilliseconds, seconds * 1000)
                    state.workers[index].waitMilliseconds = Self.average(
                        state.workers[index].waitMilliseconds, wait * 1000)
                    if let reported = reports[state.workers[index].peer] {
                        let compute = Double(reported.sent - reported.received) / 1e6
                        state.workers[index].computeMilliseconds = Self.average(
                            state.workers[index].computeMilliseconds, compute)
                        state.workers[index].transferMilliseconds = Self.average(
                            state.workers[index].transferMilliseconds, max(0, seconds * 1000 - compute))
                    }
                    answered.append((state.workers[index].name, seconds))
                }
                if step.step > 0, lastBytes.step >= 0 {
                    // The previous step's traffic: the difference of the running totals.
                    state.run.bytesPerStep =
                        (step.bytesSent + step.bytesReceived - lastBytes.total) / (step.step - lastBytes.step)
                }
                lastBytes = (step.step, step.bytesSent + step.bytesReceived)
                return answered
            }
            for (name, seconds) in names { metrics.recordAnswer(worker: name, seconds: seconds) }
        case .epochCompleted:
            break
        case .workerDied(let info, let step, let reason):
            change {
                upsert(
                    &$0, info, state: reason.hasPrefix("evicted") ? "evicted" : "lost", step: step, now: now,
                    note: reason)
                note(&$0, "\(info) lost at step \(step): \(reason)", level: "warning")
            }
        case .undecodable(let peer, let error):
            change { note(&$0, "undecodable message from \(peer): \(error)", level: "warning") }
        case .peerAddress(let peer, let address):
            change { state in
                if addresses.count < 4096 { addresses["\(peer)"] = address }
                for index in state.workers.indices where state.workers[index].peer == "\(peer)" {
                    state.workers[index].address = address
                }
            }
        case .ignored, .ended:
            break
        }
        metrics.setWorkers(lock.withLock { state.workers.map(\.state) })
    }

    private func update(_ state: inout DashboardState, workers: [WorkerInfo], step: Int, now: Double) {
        for info in workers {
            upsert(&state, info, state: info.slot == nil ? "spare" : "training", step: step, now: now, note: nil)
        }
    }

    private func upsert(
        _ state: inout DashboardState, _ info: WorkerInfo, state kind: String, step: Int, now: Double, note: String?
    ) {
        let share = Double(info.blocks.count) / Double(blockCount)
        if let index = state.workers.firstIndex(where: { $0.peer == "\(info.peer)" }) {
            state.workers[index].state = kind
            state.workers[index].slot = info.slot
            state.workers[index].blocks = describeBlocks(info.blocks)
            state.workers[index].share = kind == "lost" || kind == "evicted" ? 0 : share
            state.workers[index].lastSeen = now
            if let note { state.workers[index].note = note }
        } else {
            state.workers.append(
                .init(
                    name: info.name, peer: "\(info.peer)", address: addresses["\(info.peer)"] ?? "", state: kind,
                    slot: info.slot, threads: info.threads,
                    blocks: describeBlocks(info.blocks), share: share, joinedStep: step, lastSeen: now,
                    note: note ?? ""))
            // Rows in name order ("local-2" before "local-10"), not in the order the workers happened
            // to connect, so that a page and a report list the same run the same way.
            state.workers.sort {
                switch $0.name.compare($1.name, options: .numeric) {
                case .orderedAscending: true
                case .orderedDescending: false
                case .orderedSame: $0.peer < $1.peer
                }
            }
        }
    }

    // MARK: - Report

    /// The run's page as it stands, as one self-contained HTML file (`--report`).
    public func report() throws -> String {
        let state = current
        var images: [String: String] = [:]
        let size = testImages.pixelsPerImage
        for mistake in state.evaluation?.mistakes ?? [] where (0..<testImages.count).contains(mistake.index) {
            let pixels = Array(testImages.pixels[(mistake.index * size)..<((mistake.index + 1) * size)])
            let png = try PNG.encode(
                RasterImage(width: testImages.columns, height: testImages.rows, layout: .grey, samples: pixels))
            images["\(mistake.index)"] = "data:image/png;base64," + Data(png).base64EncodedString()
        }
        return try Pages.report(state: state, images: images)
    }

    // MARK: - The draw box's model

    /// The model of the latest kept weights, built (calibrated, folded) when a drawing asks for it and
    /// the weights are newer, at most every 2 seconds; nil before the first step.
    public func currentModel() -> Ensemble? {
        let (snapshot, built, lastBuilt) = lock.withLock { (self.snapshot, self.built, self.lastBuilt) }
        guard let snapshot else { return nil }
        if let built, built.step == snapshot.step || Date().timeIntervalSince(lastBuilt) < 2 {
            return built.ensemble
        }
        guard let network = try? snapshot.network() else { return built?.ensemble }
        let ensemble = Ensemble(network: network, name: "weights after step \(snapshot.step)")
        lock.withLock {
            self.built = (snapshot.step, ensemble)
            self.lastBuilt = Date()
        }
        return ensemble
    }

    static func describe(_ configuration: TrainingConfiguration) -> [String: String] {
        var shown: [String: String] = [
            "model": configuration.model, "epochs": "\(configuration.epochs)",
            "batch size": "\(configuration.batchSize)", "learning rate": "\(configuration.learningRate)",
            "optimizer": "\(configuration.optimizer)", "schedule": "\(configuration.schedule)",
            "seed": "\(configuration.seed)", "threads": "\(configuration.threads)",
        ]
        shown["augmentation"] =
            configuration.augment
            ? "shift \(configuration.shift) px, rotation \(configuration.rotation)°, scale \(configuration.scale), "
                + "shear \(configuration.shear)°"
                + (configuration.elastic > 0 ? ", elastic \(configuration.elastic) px" : "") : "none"
        shown["weight decay"] = "\(configuration.weightDecay)"
        shown["average decay"] = "\(configuration.averageDecay)"
        return shown
    }
}
