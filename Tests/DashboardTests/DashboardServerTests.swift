// The live dashboard's routes, fed with a run's events by hand: the state the page draws, the event
// stream, the mistakes' images, the metrics, and the draw box on the weights of the moment.
import ConvNet
import Dashboard
import DataParallel
import Foundation
import Hummingbird
import HummingbirdTesting
import MNIST
import TestSupport
import Training
import XCTest

final class DashboardServerTests: XCTestCase {
    let test = TinyDataset.images(count: 160, seed: 11)
    let architecture = ModelPreset.defaultPreset.architecture

    private func progress(step: Int, loss: Double) -> BatchProgress {
        BatchProgress(
            epoch: 1, epochs: 2, step: step, stepsPerEpoch: 5, globalStep: step, totalSteps: 10, loss: loss,
            accuracy: 0.5, learningRate: 0.001 * Double(step), imagesPerSecond: 100, trainingSeconds: Double(step))
    }

    /// A step timing in which alpha reported computing for `milliseconds` on its own clock.
    private func alphaComputed(milliseconds: UInt64) -> StepTiming {
        var timing = StepTiming(broadcastStarted: 1)
        var exchange = StepTiming.Exchange()
        exchange.reported = WorkerTiming(received: 5_000_000_000, sent: 5_000_000_000 + milliseconds * 1_000_000)
        timing.workers[PeerID("a")] = exchange
        return timing
    }

    /// A monitor that has seen the start of a run, three steps, two workers joining and one dying, the
    /// first epoch's evaluation and a checkpoint. Returns it with the evaluation and the network.
    private func monitorAfterOneEpoch() throws -> (TrainingMonitor, Evaluation, Network) {
        var configuration = TrainingConfiguration()
        configuration.epochs = 2
        configuration.batchSize = 64
        let monitor = TrainingMonitor(mode: "coordinator", configuration: configuration, testImages: test)
        let first = WorkerInfo(peer: PeerID("a"), name: "alpha", slot: 0, threads: 2, blocks: [0, 1])
        let second = WorkerInfo(peer: PeerID("b"), name: "beta", slot: 1, threads: 1, blocks: [2, 3])
        monitor.record(.peerAddress(peer: PeerID("a"), address: "10.0.0.7"), blockCount: 4)
        monitor.record(.workerJoined(first, joined: 1, expected: 2, step: 0, workers: [first]), blockCount: 4)
        monitor.record(.workerJoined(second, joined: 2, expected: 2, step: 0, workers: [first, second]), blockCount: 4)
        monitor.record(
            .started(
                model: "fast", parameterCount: 1234, trainCount: 300, testCount: 160, stepsPerEpoch: 5, totalSteps: 10))
        for step in 1...3 { monitor.record(.batchCompleted(progress(step: step, loss: 2.0 / Double(step)))) }
        // Step 2 as the coordinator saw it: alpha answered after 30 ms, beta after 50 ms (all gathered).
        monitor.record(
            .stepCompleted(
                StepMetrics(
                    step: 2, epoch: 0, sampleCount: 64, lossSum: 64, correctCount: 32, learningRate: 0.002,
                    gatherSeconds: 0.05, applySeconds: 0.001, answerSeconds: [PeerID("a"): 0.03, PeerID("b"): 0.05],
                    timing: alphaComputed(milliseconds: 24), bytesSent: 1000, bytesReceived: 400)),
            blockCount: 4)
        // Step 3 moved 900 more bytes; beta did not answer it.
        monitor.record(
            .stepCompleted(
                StepMetrics(
                    step: 3, epoch: 0, sampleCount: 64, lossSum: 64, correctCount: 32, learningRate: 0.003,
                    gatherSeconds: 0.03, applySeconds: 0.001, answerSeconds: [PeerID("a"): 0.03],
                    bytesSent: 1600, bytesReceived: 700)),
            blockCount: 4)
        monitor.record(.workerDied(second, step: 3, reason: "silent for 10 s"), blockCount: 4)
        let network = try Network(architecture: architecture, seed: 4)
        let evaluation = Evaluation(network: try network.folded(), images: test)
        monitor.record(.evaluated(epoch: 1, evaluation))
        monitor.record(
            .epochCompleted(
                EpochSummary(
                    epoch: 1, epochs: 2, loss: 1, trainAccuracy: 0.4, testAccuracy: evaluation.accuracy, seconds: 3,
                    imagesPerSecond: 100, trainingSeconds: 3, evaluationSeconds: 0.1)))
        monitor.record(.checkpointWritten(step: 3, path: "/tmp/run.checkpoint.safetensors"))
        return (monitor, evaluation, network)
    }

    private static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    func testTheStateIsWhatTheEventsSaid() async throws {
        let (monitor, evaluation, _) = try monitorAfterOneEpoch()
        let application = Application(router: DashboardServer(monitor: monitor).router())
        try await application.test(.router) { client in
            try await client.execute(uri: "/state", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                let state = try Self.json(response.body)
                XCTAssertEqual(state["status"] as? String, "training")
                let run = try XCTUnwrap(state["run"] as? [String: Any])
                XCTAssertEqual(run["parameters"] as? Int, 1234)
                XCTAssertEqual(run["totalSteps"] as? Int, 10)
                XCTAssertEqual((run["configuration"] as? [String: String])?["batch size"], "64")
                XCTAssertEqual(run["bytesPerStep"] as? Int, 900)
                let progress = try XCTUnwrap(state["progress"] as? [String: Any])
                XCTAssertEqual(progress["step"] as? Int, 3)
                XCTAssertEqual(progress["etaSeconds"] as? Double, 7, "1 s per step, 7 steps to go")
                XCTAssertEqual(progress["lastCheckpointStep"] as? Int, 3)
                let curves = try XCTUnwrap(state["curves"] as? [String: [[Double]]])
                XCTAssertEqual(curves["loss"], [[1, 2], [2, 1], [3, 2.0 / 3]])
                XCTAssertEqual(curves["testAccuracy"], [[1, evaluation.accuracy]])
                let workers = try XCTUnwrap(state["workers"] as? [[String: Any]])
                XCTAssertEqual(workers.map { $0["name"] as? String }, ["alpha", "beta"])
                XCTAssertEqual(workers.map { $0["state"] as? String }, ["training", "lost"])
                XCTAssertEqual(workers.map { $0["share"] as? Double }, [0.5, 0])
                XCTAssertEqual(workers[1]["note"] as? String, "silent for 10 s")
                XCTAssertEqual(try XCTUnwrap(workers[0]["answerMilliseconds"] as? Double), 30, accuracy: 1e-9)
                XCTAssertEqual(try XCTUnwrap(workers[0]["computeMilliseconds"] as? Double), 24, accuracy: 1e-9)
                XCTAssertEqual(try XCTUnwrap(workers[0]["transferMilliseconds"] as? Double), 6, accuracy: 1e-9)
                XCTAssertNil(workers[1]["computeMilliseconds"] as? Double, "beta sent no timing")
                XCTAssertEqual(workers.map { $0["address"] as? String }, ["10.0.0.7", ""])
                // 20 ms at step 2, then 0 at step 3 (alpha was the last): the average moves 1/20 of the way.
                XCTAssertEqual(try XCTUnwrap(workers[0]["waitMilliseconds"] as? Double), 19, accuracy: 1e-9)
                XCTAssertEqual(try XCTUnwrap(workers[1]["waitMilliseconds"] as? Double), 0, accuracy: 1e-9)
                let view = try XCTUnwrap(state["evaluation"] as? [String: Any])
                XCTAssertEqual(view["confusion"] as? [[Int]], evaluation.confusion)
                let mistakes = try XCTUnwrap(view["mistakes"] as? [[String: Any]])
                XCTAssertEqual(mistakes.count, evaluation.mistakes.count)
                XCTAssertGreaterThan(mistakes.count, 0, "an untrained network gets most of them wrong")
                XCTAssertEqual(mistakes.first?["index"] as? Int, evaluation.mistakes.first?.index)
                let log = try XCTUnwrap(state["log"] as? [[String: Any]]).compactMap { $0["text"] as? String }
                XCTAssertTrue(log.contains { $0.contains("\"beta\"") && $0.contains("lost at step 3") }, "\(log)")
                XCTAssertTrue(log.contains { $0.contains("checkpoint after step 3") }, "\(log)")
            }
        }
    }

    func testWorkersAreListedByNameWhateverOrderTheyJoinedIn() throws {
        let monitor = TrainingMonitor(mode: "coordinator", configuration: TrainingConfiguration(), testImages: test)
        var joined: [WorkerInfo] = []
        for (index, name) in ["node-10", "node-2", "node-1"].enumerated() {
            joined.append(WorkerInfo(peer: PeerID(name), name: name, slot: index, threads: 1, blocks: [index]))
            monitor.record(
                .workerJoined(joined.last!, joined: joined.count, expected: 3, step: 0, workers: joined), blockCount: 3)
        }
        XCTAssertEqual(monitor.current.workers.map(\.name), ["node-1", "node-2", "node-10"])
    }

    func testTheEventStreamSendsEachNewStateAndEndsWhenClosed() async throws {
        let (monitor, _, _) = try monitorAfterOneEpoch()
        let server = DashboardServer(monitor: monitor, pollInterval: .milliseconds(10), keepAliveInterval: .seconds(60))
        let application = Application(router: server.router())
        let version = monitor.version
        let stepFour = progress(step: 4, loss: 0.4)
        try await application.test(.router) { client in
            // A later event while the stream is open, then the end of the run.
            Task {
                try await Task.sleep(for: .milliseconds(200))
                monitor.record(.batchCompleted(stepFour))
                try await Task.sleep(for: .milliseconds(200))
                monitor.finish("finished", "model written")
                server.close()
            }
            try await client.execute(uri: "/events", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers[.contentType], "text/event-stream")
                let events = String(buffer: response.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
                let states = try events.map { event -> [String: Any] in
                    XCTAssertTrue(event.hasPrefix("data: "), event)
                    return try XCTUnwrap(
                        JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any])
                }
                XCTAssertEqual(states.count, 3, "the state at the start, after step 4, and the finished one")
                XCTAssertEqual(states.first?["version"] as? Int, version)
                XCTAssertEqual((states[1]["progress"] as? [String: Any])?["step"] as? Int, 4)
                XCTAssertEqual(states.last?["status"] as? String, "finished")
            }
        }
    }

    func testThePageItsScriptsAndHealth() async throws {
        let (monitor, _, _) = try monitorAfterOneEpoch()
        let application = Application(router: DashboardServer(monitor: monitor).router())
        try await application.test(.router) { client in
            for (path, type, content) in [
                ("/", "text/html", "<svg id=\"chart-loss\""),
                ("/dashboard.js", "text/javascript", "EventSource(\"events\")"),
                ("/draw.js", "text/javascript", "pointerdown"), ("/style.css", "text/css", ".chart .line"),
            ] {
                try await client.execute(uri: path, method: .get) { response in
                    XCTAssertEqual(response.status, .ok, path)
                    XCTAssertTrue(response.headers[.contentType]?.hasPrefix(type) ?? false, path)
                    XCTAssertNotNil(response.headers[.contentSecurityPolicy], path)
                    XCTAssertTrue(String(buffer: response.body).contains(content), path)
                }
            }
            try await client.execute(uri: "/health", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(try Self.json(response.body) as? [String: String], ["status": "ok", "run": "training"])
            }
        }
    }

    func testMistakeImagesAreTheTestSetsImages() async throws {
        let (monitor, _, _) = try monitorAfterOneEpoch()
        let application = Application(router: DashboardServer(monitor: monitor).router())
        let test = self.test
        try await application.test(.router) { client in
            try await client.execute(uri: "/mistake/5.png", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers[.contentType], "image/png")
                let image = try ImageFile.decode(Array(response.body.readableBytesView))
                XCTAssertEqual(image.samples, Array(test.pixels[(5 * 784)..<(6 * 784)]))
            }
            for bad in ["/mistake/160.png", "/mistake/-1.png", "/mistake/5", "/mistake/x.png"] {
                try await client.execute(uri: bad, method: .get) { response in
                    XCTAssertEqual(response.status, .notFound, bad)
                }
            }
        }
    }

    func testMetricsFollowTheRun() async throws {
        let (monitor, evaluation, _) = try monitorAfterOneEpoch()
        let application = Application(router: DashboardServer(monitor: monitor).router())
        try await application.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                let samples = try PrometheusText.parse(String(buffer: response.body))
                func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
                    samples.first { $0.name == name && $0.labels == labels }?.value
                }
                XCTAssertEqual(value("mnist_train_steps_total"), 3)
                XCTAssertEqual(value("mnist_train_samples_total"), 3 * 64)
                XCTAssertEqual(value("mnist_train_loss"), 2.0 / 3)
                XCTAssertEqual(value("mnist_train_test_accuracy"), evaluation.accuracy)
                XCTAssertEqual(value("mnist_train_workers", ["state": "training"]), 1)
                XCTAssertEqual(value("mnist_train_workers", ["state": "lost"]), 1)
                XCTAssertEqual(value("mnist_train_checkpoints_total"), 1)
                let age = try XCTUnwrap(value("mnist_train_checkpoint_age_seconds"))
                XCTAssertTrue((0..<60).contains(age), "\(age)")
                XCTAssertEqual(value("mnist_train_model_parameters"), 1234)
                XCTAssertEqual(value("mnist_train_worker_answer_seconds_count", ["worker": "alpha"]), 2)
                XCTAssertEqual(value("mnist_train_bytes_total", ["direction": "sent"]), 1600)
                XCTAssertEqual(value("mnist_train_bytes_total", ["direction": "received"]), 700)
                XCTAssertEqual(value("mnist_train_worker_answer_seconds_sum", ["worker": "beta"]), 0.05)
                XCTAssertEqual(value("mnist_train_worker_answer_seconds_bucket", ["worker": "alpha", "le": "0.02"]), 0)
                XCTAssertEqual(value("mnist_train_worker_answer_seconds_bucket", ["worker": "alpha", "le": "0.05"]), 2)
                XCTAssertEqual(value("mnist_train_step_seconds_count"), 2)
            }
        }
    }

    func testTheDrawBoxAsksTheWeightsOfTheMoment() async throws {
        let (monitor, _, network) = try monitorAfterOneEpoch()
        let application = Application(router: DashboardServer(monitor: monitor).router())
        let png = try PredictionServerTests.sevenPNG()
        try await application.test(.router) { client in
            try await client.execute(uri: "/predict", method: .post, body: ByteBuffer(bytes: png)) { response in
                XCTAssertEqual(response.status, .serviceUnavailable, "no weights before the first snapshot")
                XCTAssertTrue(String(buffer: response.body).contains("no model yet"))
            }
        }
        let calibration = InputNormalization.normalized(Array(test.pixels.prefix(64 * 784)))
        let snapshot = ModelSnapshot(
            step: 3, architecture: architecture, parameters: network.parameters, calibration: calibration)
        monitor.record(.modelUpdated(snapshot))
        // The reference: the snapshot's network (calibrated and folded) on the preprocessed upload.
        let digit = try MNISTPreprocessor().preprocess(try ImageFile.decode(png))
        let expected = try snapshot.network().probabilities(
            images: digit.pixels.map { ($0 - InputNormalization.mean) / InputNormalization.standardDeviation })
        try await application.test(.router) { client in
            try await client.execute(uri: "/predict", method: .post, body: ByteBuffer(bytes: png)) { response in
                XCTAssertEqual(response.status, .ok)
                let body = try Self.json(response.body)
                let probabilities = try XCTUnwrap(body["probabilities"] as? [Double]).map { Float($0) }
                XCTAssertEqual(probabilities, expected, "the same network on the same input, to the bit")
            }
        }
        XCTAssertEqual(monitor.current.modelStep, 3)
    }
}
