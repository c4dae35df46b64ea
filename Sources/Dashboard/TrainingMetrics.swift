// What a training run exposes at the dashboard's GET /metrics, in Prometheus's text format (names
// `mnist_train_*`). Updated from the training thread with atomic counters and gauges.
import Prometheus
import Synchronization
import Training

/// The counters, gauges and histograms of a training run.
public final class TrainingMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let steps: Counter
    let samples: Counter
    let loss: Gauge
    let learningRate: Gauge
    let imagesPerSecond: Gauge
    let epoch: Gauge
    let testAccuracy: Gauge
    let parameters: Gauge
    let checkpoints: Counter
    let checkpointAge: Gauge
    let stepSeconds: DurationHistogram
    let bytesSent: Counter
    let bytesReceived: Counter
    /// The totals last counted, so that each step adds its difference.
    private let bytesCounted = Mutex<(sent: Int, received: Int)>((0, 0))
    private let workers: [String: Gauge]
    /// Per worker name, its answer-time histogram (made when the worker first answers).
    private let answers = Mutex<[String: DurationHistogram]>([:])
    static let stepBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50), .milliseconds(100),
        .milliseconds(200), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        func name(_ metric: String, unit: String = "", help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(
                namespace: "mnist", subsystem: "train", metricName: metric, unitName: unit, helpText: help)
        }
        steps = registry.makeCounter(descriptor: name("steps", unit: "total", help: "Optimizer steps applied."))
        samples = registry.makeCounter(
            descriptor: name("samples", unit: "total", help: "Training images that went into applied steps."))
        loss = registry.makeGauge(descriptor: name("loss", help: "Mean loss of the last step's batch."))
        learningRate = registry.makeGauge(descriptor: name("learning_rate", help: "The last step's learning rate."))
        imagesPerSecond = registry.makeGauge(
            descriptor: name("images_per_second", help: "Training images per second so far in this epoch."))
        epoch = registry.makeGauge(descriptor: name("epoch", help: "Epochs finished."))
        testAccuracy = registry.makeGauge(
            descriptor: name("test_accuracy", help: "Test accuracy of the last evaluation, 0-1."))
        parameters = registry.makeGauge(descriptor: name("model_parameters", help: "Parameters of the network."))
        checkpoints = registry.makeCounter(
            descriptor: name("checkpoints", unit: "total", help: "Checkpoints written."))
        checkpointAge = registry.makeGauge(
            descriptor: name(
                "checkpoint_age", unit: "seconds", help: "Seconds since the last checkpoint was written (-1: none yet)."
            ))
        stepSeconds = registry.makeDurationHistogram(
            descriptor: name(
                "step", unit: "seconds",
                help: "Coordinator: seconds from sending a step to applying its gradient (every worker's answer)."),
            buckets: Self.stepBuckets)
        let bytes = name(
            "bytes", unit: "total", help: "Coordinator: bytes of protocol messages sent to and received from workers.")
        bytesSent = registry.makeCounter(descriptor: bytes, labels: [("direction", "sent")])
        bytesReceived = registry.makeCounter(descriptor: bytes, labels: [("direction", "received")])
        let workerDescriptor = name("workers", help: "Workers by state (coordinator).")
        workers = Dictionary(
            uniqueKeysWithValues: ["training", "spare", "lost", "evicted"].map {
                ($0, registry.makeGauge(descriptor: workerDescriptor, labels: [("state", $0)]))
            })
        checkpointAge.set(-1.0)
    }

    func recordStep(_ progress: BatchProgress) {
        steps.increment()
        loss.set(progress.loss)
        learningRate.set(progress.learningRate)
        imagesPerSecond.set(progress.imagesPerSecond)
    }

    /// A worker's answer time for one step: from the coordinator sending the step to its gradient.
    func recordAnswer(worker: String, seconds: Double) {
        let registry = self.registry
        let histogram = answers.withLock { histograms in
            if let existing = histograms[worker] { return existing }
            let made = registry.makeDurationHistogram(
                descriptor: MetricNameDescriptor(
                    namespace: "mnist", subsystem: "train", metricName: "worker_answer", unitName: "seconds",
                    helpText: "Per worker: seconds from the coordinator sending a step to the worker's gradient."),
                labels: [("worker", worker)], buckets: Self.stepBuckets)
            histograms[worker] = made
            return made
        }
        histogram.recordNanoseconds(Int64(seconds * 1e9))
    }

    /// The coordinator's byte totals after a step.
    func recordBytes(sent: Int, received: Int) {
        let (newlySent, newlyReceived) = bytesCounted.withLock { counted in
            defer { counted = (max(counted.sent, sent), max(counted.received, received)) }
            return (max(0, sent - counted.sent), max(0, received - counted.received))
        }
        bytesSent.increment(by: Int64(newlySent))
        bytesReceived.increment(by: Int64(newlyReceived))
    }

    func recordSamples(_ count: Int) { samples.increment(by: Int64(count)) }

    func setWorkers(_ states: [String]) {
        for (state, gauge) in workers { gauge.set(Double(states.filter { $0 == state }.count)) }
    }

    /// The exposition text.
    public func render() -> [UInt8] { registry.emitToBuffer() }
}
