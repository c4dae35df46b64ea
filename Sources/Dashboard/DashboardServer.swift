// The live training dashboard's routes: the page, its state as JSON and as a stream of server-sent
// events, test images for the gallery of mistakes, the draw box's POST /predict on the weights of the
// moment, and Prometheus /metrics. It reads the `TrainingMonitor`; training never waits for it.
import Foundation
import Hummingbird
import MNIST
import Synchronization

/// The routes of `--dashboard`.
public final class DashboardServer: Sendable {
    public let monitor: TrainingMonitor
    let prediction: PredictionServer
    /// Event streams open at once; more get 503.
    public static let maximumStreams = 16
    private let streams = Atomic<Int>(0)
    private let closing = Atomic<Bool>(false)
    /// How often a stream looks for a new state, and how often it says it is alive.
    let pollInterval: Duration
    let keepAliveInterval: Duration

    public init(
        monitor: TrainingMonitor, pollInterval: Duration = .milliseconds(250),
        keepAliveInterval: Duration = .seconds(10)
    ) {
        self.monitor = monitor
        self.pollInterval = pollInterval
        self.keepAliveInterval = keepAliveInterval
        prediction = PredictionServer(
            reader: DigitReader(source: { monitor.currentModel() }), modelNames: ["current weights"],
            parameterCount: 0)
    }

    /// Ends the event streams (before the server stops: a graceful stop waits for open responses).
    public func close() { closing.store(true, ordering: .relaxed) }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        Pages.addDashboardPage(to: router)
        prediction.addPredictRoutes(to: router)
        router.get("state") { _, _ in try JSONResponse.make(self.monitor.current) }
        router.get("events") { _, _ in try self.events() }
        router.get("health") { _, _ in
            try JSONResponse.make(["status": "ok", "run": self.monitor.current.status])
        }
        router.get("metrics") { _, _ in
            self.monitor.metrics.checkpointAge.set(self.monitor.checkpointAge ?? -1)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(
                    byteBuffer: ByteBuffer(bytes: self.monitor.metrics.render() + self.prediction.metrics.render())))
        }
        router.get("mistake/:index") { _, context in
            let images = self.monitor.testImages
            guard let text = context.parameters.get("index"), text.hasSuffix(".png"),
                let index = Int(text.dropLast(4)), (0..<images.count).contains(index)
            else {
                throw HTTPError(
                    .notFound, message: "no such test image; ask /mistake/N.png with N in 0..<\(images.count)")
            }
            let size = images.pixelsPerImage
            let pixels = Array(images.pixels[(index * size)..<((index + 1) * size)])
            let png = try PNG.encode(
                RasterImage(width: images.columns, height: images.rows, layout: .grey, samples: pixels))
            return Response(
                status: .ok, headers: [.contentType: "image/png", .cacheControl: "max-age=3600"],
                body: .init(byteBuffer: ByteBuffer(bytes: png)))
        }
        return router
    }

    /// GET /events: `text/event-stream`, one `data:` line of JSON state whenever it changed (polled
    /// every `pollInterval`), a comment line as keep-alive, until the client goes or the run ends.
    func events() throws -> Response {
        guard streams.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maximumStreams else {
            streams.wrappingSubtract(1, ordering: .relaxed)
            throw HTTPError(
                .serviceUnavailable, headers: [.retryAfter: "5"],
                message: "\(Self.maximumStreams) event streams are open; close a dashboard tab")
        }
        let monitor = self.monitor, poll = pollInterval, keepAlive = keepAliveInterval
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: .init { writer in
                defer { self.streams.wrappingSubtract(1, ordering: .relaxed) }
                let encoder = JSONEncoder()
                var sent = -1
                var quietSince = ContinuousClock.now
                while !Task.isCancelled {
                    let closing = self.closing.load(ordering: .relaxed)
                    let state = monitor.current
                    if state.version != sent {
                        sent = state.version
                        var buffer = ByteBuffer(string: "data: ")
                        buffer.writeBytes(try encoder.encode(state))
                        buffer.writeString("\n\n")
                        try await writer.write(buffer)
                        quietSince = .now
                    } else if ContinuousClock.now - quietSince >= keepAlive {
                        try await writer.write(ByteBuffer(string: ": alive\n\n"))
                        quietSince = .now
                    }
                    if closing { break }
                    try await Task.sleep(for: poll)
                }
                try await writer.finish(nil)
            })
    }
}
