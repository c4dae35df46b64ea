// What `mnist serve` counts, in Prometheus's text format at GET /metrics. One registry per server
// (no process-wide metrics bootstrap), so tests can run several servers side by side.
import Prometheus

/// The counters, gauges and histograms of a prediction server (names `mnist_serve_*`).
public final class ServeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let answered: [Counter]
    private let busy: Counter
    private let unreadable: Counter
    private let noDigit: Counter
    private let tooLarge: Counter
    private let timedOut: Counter
    let inFlight: Gauge
    let duration: DurationHistogram

    public init(models: Int, parameters: Int) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        func name(_ metric: String, unit: String, help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(
                namespace: "mnist", subsystem: "serve", metricName: metric, unitName: unit, helpText: help)
        }
        let predictions = name("predictions", unit: "total", help: "Images read, by the digit answered.")
        answered = (0..<10).map { registry.makeCounter(descriptor: predictions, labels: [("digit", "\($0)")]) }
        let rejected = name(
            "rejected", unit: "total",
            help:
                "Uploads not answered: busy (503), too_large (413), timeout (408), unreadable_image or no_digit (422).")
        busy = registry.makeCounter(descriptor: rejected, labels: [("reason", "busy")])
        unreadable = registry.makeCounter(descriptor: rejected, labels: [("reason", "unreadable_image")])
        noDigit = registry.makeCounter(descriptor: rejected, labels: [("reason", "no_digit")])
        tooLarge = registry.makeCounter(descriptor: rejected, labels: [("reason", "too_large")])
        timedOut = registry.makeCounter(descriptor: rejected, labels: [("reason", "timeout")])
        inFlight = registry.makeGauge(
            descriptor: name("predictions_in_flight", unit: "", help: "Uploads being read or answered now."))
        duration = registry.makeDurationHistogram(
            descriptor: name(
                "prediction", unit: "seconds", help: "Time to decode, preprocess and classify one upload."),
            buckets: [
                .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
            ])
        registry.makeGauge(descriptor: name("models", unit: "", help: "Models whose probabilities are averaged."))
            .set(Double(models))
        registry.makeGauge(
            descriptor: name("model_parameters", unit: "", help: "Parameters of all the models together.")
        ).set(Double(parameters))
    }

    func recordAnswer(digit: Int) { answered[digit].increment() }
    func recordBusy() { busy.increment() }
    func recordUnreadable() { unreadable.increment() }
    func recordNoDigit() { noDigit.increment() }
    func recordTooLarge() { tooLarge.increment() }
    func recordTimeout() { timedOut.increment() }

    /// The exposition text.
    public func render() -> [UInt8] { registry.emitToBuffer() }
}
