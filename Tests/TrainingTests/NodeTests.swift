// The coordinator and worker nodes over real sockets (tcp://127.0.0.1, ephemeral ports) in one
// process: the coordinator on one thread, each worker on its own, training the toy softmax model.
// Checks the numbers (each step's averaged gradient equals the naive full-batch gradient; same seed,
// same parameters) and the failures (a dying worker, an absent coordinator, a version mismatch, a
// stop request). Timeouts are safety nets only; nothing asserts how long anything took.
import DataParallel
import Foundation
import MNIST
import TestSupport
import XCTest
import ZeroMQ

@testable import Training

final class NodeTests: XCTestCase {
    static let safety = 20.0  // Seconds; a safety net, never a timing assertion.

    /// One coordinator and `workers.count` workers on threads; returns everything they reported.
    struct ClusterRun {
        var result: CoordinatorNodeResult
        var model: ToyModelHost
        var coordinatorEvents: [CoordinatorNodeEvent]
        var workerOutcomes: [NodeOutcome]
    }

    func makeCoordinator(
        workerCount: Int, data: LabeledImages, batchSize: Int = 20, totalSteps: Int, seed: UInt64 = 7,
        recorder: EventRecorder<CoordinatorNodeEvent>, evaluationSeconds: Double = 0,
        adjust: (inout CoordinatorNodeConfiguration) -> Void = { _ in }
    ) -> CoordinatorNode<ToyModelHost> {
        var configuration = CoordinatorNodeConfiguration(
            endpoint: "tcp://127.0.0.1:*", workerCount: workerCount, batchSize: batchSize, totalSteps: totalSteps,
            seed: seed)
        configuration.joinTimeoutSeconds = Self.safety
        configuration.stateMachine.microBatchSize = 4  // Batches of 20: 5 blocks, so up to 5 workers.
        adjust(&configuration)
        var model = ToyModelHost(parameters: ToySoftmax.initialWeights(pixels: data.pixelsPerImage, seed: seed))
        model.evaluationSeconds = evaluationSeconds
        return CoordinatorNode(
            configuration: configuration, model: model, trainingSet: data, logger: quietLogger("test.coordinator"),
            onEvent: recorder.record)
    }

    func makeWorker(
        endpoint: String, name: String, factory: @escaping GradientComputerFactory = ToyGradientComputer.factory(),
        adjust: (inout WorkerNodeConfiguration) -> Void = { _ in }
    ) -> WorkerNode {
        var configuration = WorkerNodeConfiguration(endpoint: endpoint, name: name)
        adjust(&configuration)
        return WorkerNode(
            configuration: configuration, makeGradientComputer: factory, logger: quietLogger("test.\(name)"))
    }

    func listeningEndpoint(_ recorder: EventRecorder<CoordinatorNodeEvent>) throws -> String {
        try XCTUnwrap(
            recorder.first(within: Self.safety) { event -> String? in
                if case .listening(let endpoint) = event { return endpoint }
                return nil
            }, "the coordinator never reported its endpoint")
    }

    func train(workerCount: Int, data: LabeledImages, totalSteps: Int, seed: UInt64) throws -> ClusterRun {
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(
            workerCount: workerCount, data: data, totalSteps: totalSteps, seed: seed, recorder: recorder)
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let workerThreads = (0..<workerCount).map { index in
            let worker = makeWorker(endpoint: endpoint, name: "toy-\(index)")
            return Background("worker \(index)") { worker.run() }
        }
        let result = try XCTUnwrap(coordinatorThread.wait(seconds: Self.safety), "coordinator did not return")
        let outcomes = try workerThreads.map { try XCTUnwrap($0.wait(seconds: Self.safety), "worker did not return") }
        return ClusterRun(
            result: result, model: coordinator.model, coordinatorEvents: recorder.events, workerOutcomes: outcomes)
    }

    // MARK: Numbers

    func testEveryStepAveragesToTheFullBatchGradient() throws {
        let data = TinyDataset.images(count: 90, seed: 3)
        let plan = BatchPlan(sampleCount: 90, batchSize: 20, seed: 7, microBatchSize: 4)
        let totalSteps = 2 * plan.stepsPerEpoch  // Two epochs; each ends with a short batch of 10.
        let run = try train(workerCount: 3, data: data, totalSteps: totalSteps, seed: 7)

        XCTAssertEqual(run.result.outcome, .finished(reason: "all \(totalSteps) steps completed"))
        XCTAssertEqual(run.result.completedSteps, totalSteps)
        XCTAssertTrue(run.workerOutcomes.allSatisfy(\.isFinished), "\(run.workerOutcomes)")
        XCTAssertEqual(run.model.history.map(\.step), Array(0..<totalSteps))
        XCTAssertEqual(run.model.evaluatedEpochs, [0, 1])
        let steps = run.coordinatorEvents.compactMap { event -> StepMetrics? in
            if case .stepCompleted(let metrics) = event { return metrics }
            return nil
        }
        XCTAssertEqual(steps.map(\.step), Array(0..<totalSteps))
        let joined = run.coordinatorEvents.compactMap { event -> Int? in
            if case .workerJoined(_, let joined, _, _, _) = event { return joined }
            return nil
        }
        XCTAssertEqual(joined, [1, 2, 3])

        var worst = (relative: 0.0, step: -1)
        for (step, weights, averaged) in run.model.history {
            let layout = plan.layoutOrder
            let batch = plan.microBatches(step: step).flatMap { $0 }.map { layout[$0] }
            let reference = ToySoftmax.summedGradient(
                weights: weights, pixels: data.pixelsPerImage, images: data.pixels, labels: data.labels,
                indices: batch)
            let mean = reference.gradient.map { $0 / Double(batch.count) }
            let scale = max(mean.map(abs).max() ?? 0, 1e-12)
            let difference = zip(averaged, mean).map { abs(Double($0) - $1) }.max() ?? 0
            if difference / scale > worst.relative { worst = (difference / scale, step) }
            XCTAssertEqual(steps[step].sampleCount, batch.count)
            XCTAssertEqual(steps[step].meanLoss, reference.lossSum / Double(batch.count), accuracy: 1e-9)
        }
        print("worst relative difference from the full-batch gradient: \(worst.relative) at step \(worst.step)")
        XCTAssertLessThanOrEqual(worst.relative, 1e-5, "worst at step \(worst.step)")
    }

    func testSameSeedAndWorkerCountGiveBitIdenticalParameters() throws {
        let data = TinyDataset.images(count: 60, seed: 4)
        let first = try train(workerCount: 2, data: data, totalSteps: 6, seed: 11)
        let second = try train(workerCount: 2, data: data, totalSteps: 6, seed: 11)
        XCTAssertTrue(first.result.outcome.isFinished, "\(first.result.outcome)")
        XCTAssertTrue(second.result.outcome.isFinished, "\(second.result.outcome)")
        XCTAssertEqual(first.model.history.count, 6)
        let differing = zip(first.model.parameters, second.model.parameters).filter { $0.bitPattern != $1.bitPattern }
        XCTAssertEqual(differing.count, 0, "\(differing.count) parameters differ, e.g. \(differing.prefix(3))")
    }

    // MARK: Failures

    /// A worker that vanishes mid-run is reported with its name and step; the survivor takes over its
    /// blocks and the run ends with the parameters of an undisturbed run, bit for bit.
    func testAWorkerThatDiesIsReportedAndTheOtherFinishesTheSameRun() throws {
        let data = TinyDataset.images(count: 60, seed: 5)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 2, data: data, totalSteps: 30, recorder: recorder) {
            $0.tickMilliseconds = 20
            $0.stateMachine.livenessTicks = 25  // 500 ms.
            $0.stateMachine.heartbeatIntervalTicks = 2
        }
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)

        // @unchecked Sendable: `node` is set before the worker's thread starts and only read after.
        final class Holder: @unchecked Sendable { var node: WorkerNode? }
        let doomed = Holder()
        let doomedWorker = makeWorker(
            endpoint: endpoint, name: "doomed",
            factory: ToyGradientComputer.factory(beforeStep: { step in
                if step == 3 { doomed.node?.simulateCrash() }
            }),
            adjust: {
                $0.tickMilliseconds = 20; $0.stateMachine.heartbeatIntervalTicks = 2
            })
        doomed.node = doomedWorker
        let survivor = makeWorker(
            endpoint: endpoint, name: "survivor",
            adjust: {
                $0.tickMilliseconds = 20; $0.stateMachine.heartbeatIntervalTicks = 2
            })
        let doomedThread = Background("doomed") { doomedWorker.run() }
        let survivorThread = Background("survivor") { survivor.run() }

        let result = try XCTUnwrap(coordinatorThread.wait(seconds: Self.safety), "coordinator did not return")
        XCTAssertTrue(result.outcome.isFinished, "\(result.outcome)")
        let deaths = recorder.events.compactMap { event -> (WorkerInfo, Int, String)? in
            if case .workerDied(let info, let step, let reason) = event { return (info, step, reason) }
            return nil
        }
        XCTAssertEqual(deaths.map(\.0.name), ["doomed"])
        XCTAssertEqual(deaths.map(\.1), [3])
        XCTAssertTrue(deaths.first?.2.contains("silent") == true, "\(deaths)")
        let shares = recorder.events.compactMap { event -> [WorkerInfo]? in
            if case .sharesChanged(let workers, 3, _) = event { return workers }
            return nil
        }
        XCTAssertEqual(shares.last?.map(\.name), ["survivor"], "the survivor takes every block")
        XCTAssertEqual(result.completedSteps, 30)
        XCTAssertEqual(doomedThread.wait(seconds: Self.safety), .failed(reason: "simulated crash"))
        XCTAssertEqual(survivorThread.wait(seconds: Self.safety)?.isFinished, true)
        let undisturbed = try train(workerCount: 1, data: data, totalSteps: 30, seed: 7)
        let differing = zip(coordinator.model.parameters, undisturbed.model.parameters).filter {
            $0.bitPattern != $1.bitPattern
        }
        XCTAssertEqual(differing.count, 0, "\(differing.count) parameters differ from the undisturbed run's")
    }

    /// Steps longer than a quarter of the heartbeat interval run on the compute queue, so the worker
    /// keeps beating through steps longer than the coordinator's liveness window.
    func testHeartbeatsFlowWhileAWorkerComputesLongerThanTheLivenessWindow() throws {
        let data = TinyDataset.images(count: 20, seed: 10)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 1, data: data, batchSize: 10, totalSteps: 3, recorder: recorder)
        {
            $0.tickMilliseconds = 20
            $0.stateMachine.livenessTicks = 25  // 500 ms, while every step takes 800 ms to compute.
            $0.stateMachine.heartbeatIntervalTicks = 2
        }
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let worker = makeWorker(
            endpoint: endpoint, name: "slow",
            factory: ToyGradientComputer.factory(beforeStep: { _ in usleep(800_000) }),
            adjust: {
                $0.tickMilliseconds = 20; $0.stateMachine.heartbeatIntervalTicks = 2
            })
        let workerThread = Background("slow") { worker.run() }
        let result = try XCTUnwrap(coordinatorThread.wait(seconds: Self.safety))
        XCTAssertTrue(result.outcome.isFinished, "\(result.outcome)")
        XCTAssertEqual(coordinator.model.history.count, 3)
        XCTAssertEqual(workerThread.wait(seconds: Self.safety)?.isFinished, true)
    }

    /// End-of-epoch evaluations run off the coordinator's polling thread: one that takes longer than
    /// both sides' liveness windows costs no worker, and every epoch's figures still arrive, in order.
    func testASlowEvaluationDoesNotCostAWorker() throws {
        let data = TinyDataset.images(count: 40, seed: 14)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(
            workerCount: 2, data: data, batchSize: 20, totalSteps: 6, recorder: recorder, evaluationSeconds: 1.5
        ) {
            $0.tickMilliseconds = 20
            $0.stateMachine.livenessTicks = 25  // 500 ms, while each evaluation takes 1.5 s.
            $0.stateMachine.heartbeatIntervalTicks = 2
        }
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let workers = (0..<2).map { index in
            let worker = makeWorker(
                endpoint: endpoint, name: "patient-\(index)",
                adjust: {
                    $0.tickMilliseconds = 20
                    $0.stateMachine.heartbeatIntervalTicks = 2
                    $0.stateMachine.livenessTicks = 25  // The worker gives up on a silent coordinator after 500 ms.
                })
            return Background("patient-\(index)") { worker.run() }
        }
        let result = try XCTUnwrap(coordinatorThread.wait(seconds: Self.safety))
        XCTAssertTrue(result.outcome.isFinished, "\(result.outcome)")
        let deaths = recorder.events.filter { if case .workerDied = $0 { true } else { false } }
        XCTAssertEqual(deaths.count, 0, "\(deaths)")
        let epochs = recorder.events.compactMap { event -> Int? in
            if case .epochCompleted(let epoch, let evaluation) = event, evaluation?.seconds == 1.5 { return epoch }
            return nil
        }
        XCTAssertEqual(epochs, [0, 1, 2])
        for worker in workers { XCTAssertEqual(worker.wait(seconds: Self.safety)?.isFinished, true) }
    }

    /// Short steps run on the polling thread: one that then wedges silences the worker's heartbeats, and
    /// the coordinator declares it dead within the liveness window instead of waiting for ever.
    func testAWorkerWhoseShortStepsWedgeIsDeclaredDead() throws {
        let data = TinyDataset.images(count: 20, seed: 13)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 1, data: data, batchSize: 10, totalSteps: 6, recorder: recorder)
        {
            $0.tickMilliseconds = 20
            $0.stateMachine.livenessTicks = 25  // 500 ms
            $0.stateMachine.heartbeatIntervalTicks = 2
        }
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let worker = makeWorker(
            endpoint: endpoint, name: "wedged",
            factory: ToyGradientComputer.factory(beforeStep: { step in if step == 3 { usleep(3_000_000) } }),
            adjust: {
                $0.tickMilliseconds = 20; $0.stateMachine.heartbeatIntervalTicks = 2
            })
        let workerThread = Background("wedged") { worker.run() }
        let result = try XCTUnwrap(coordinatorThread.wait(seconds: Self.safety), "coordinator did not return")
        guard case .failed(let reason) = result.outcome else {
            return XCTFail("expected the wedged worker to be declared dead, got \(result.outcome)")
        }
        XCTAssertTrue(reason.contains("0 workers left at step 3"), reason)
        let deaths = recorder.events.compactMap { event -> (String, Int)? in
            if case .workerDied(let info, let step, _) = event { return (info.name, step) }
            return nil
        }
        XCTAssertEqual(deaths.first?.0, "wedged")
        XCTAssertEqual(deaths.first?.1, 3)
        XCTAssertEqual(result.completedSteps, 3)
        worker.requestStop(reason: "test over")
        XCTAssertNotNil(workerThread.wait(seconds: Self.safety), "the worker did not return")
    }

    func testUndecodableFramesAreReportedWithThePeerAndIgnored() throws {
        let data = TinyDataset.images(count: 20, seed: 12)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 1, data: data, totalSteps: 2, recorder: recorder)
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let context = try Context()
        let stranger = try context.makeSocket(.dealer)
        try stranger.setRoutingID(Array("stranger".utf8))
        try stranger.connect(endpoint)
        try stranger.send([Array("GET / HTTP/1.1".utf8)])
        let error = try XCTUnwrap(
            recorder.first(within: Self.safety) { event -> MessageDecodingError? in
                if case .undecodable(let peer, let error) = event, peer == PeerID("stranger") { return error }
                return nil
            })
        XCTAssertEqual(error, .headerSize(byteCount: 14))
        stranger.close()
        // The coordinator carries on: a real worker still trains to the end.
        let worker = makeWorker(endpoint: endpoint, name: "real")
        let workerThread = Background("real") { worker.run() }
        XCTAssertEqual(coordinatorThread.wait(seconds: Self.safety)?.outcome.isFinished, true)
        XCTAssertEqual(workerThread.wait(seconds: Self.safety)?.isFinished, true)
    }

    /// A frame larger than any a worker may send (here 4 MB against a limit of about 1 MB) never reaches
    /// the coordinator: libzmq drops its sender as it arrives. The run goes on.
    func testAnOversizedFrameIsDroppedBeforeItIsRead() throws {
        let data = TinyDataset.images(count: 20, seed: 15)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 1, data: data, totalSteps: 2, recorder: recorder)
        let limit = Message.largestWorkerFrame(
            parameterCount: coordinator.model.parameters.count, blockCount: 5)
        XCTAssertLessThan(limit, 4_000_000)
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let context = try Context()
        let stranger = try context.makeSocket(.dealer)
        try stranger.setRoutingID(Array("huge".utf8))
        try stranger.connect(endpoint)
        try stranger.send([[UInt8](repeating: 7, count: 4_000_000)])
        let small = try context.makeSocket(.dealer)
        try small.setRoutingID(Array("small".utf8))
        try small.connect(endpoint)
        try small.send([Array("GET / HTTP/1.1".utf8)])
        // The small one arrives (and is reported); the huge one never does.
        XCTAssertNotNil(
            recorder.first(within: Self.safety) { event -> Bool? in
                if case .undecodable(PeerID("small"), _) = event { return true }
                return nil
            })
        Thread.sleep(forTimeInterval: 0.5)
        let huge = recorder.events.filter { if case .undecodable(PeerID("huge"), _) = $0 { true } else { false } }
        XCTAssertEqual(huge.count, 0, "the oversized frame was read")
        stranger.close()
        small.close()
        let worker = makeWorker(endpoint: endpoint, name: "real")
        let workerThread = Background("real") { worker.run() }
        XCTAssertEqual(coordinatorThread.wait(seconds: Self.safety)?.outcome.isFinished, true)
        XCTAssertEqual(workerThread.wait(seconds: Self.safety)?.isFinished, true)
    }

    func testAWorkerWithNoCoordinatorGivesUpAfterItsReconnects() throws {
        // A port that was free a moment ago: bind, read it, close.
        let context = try Context()
        let probe = try context.makeSocket(.router)
        let endpoint = try probe.bind("tcp://127.0.0.1:*")
        probe.close()

        let recorder = EventRecorder<WorkerNodeEvent>()
        var configuration = WorkerNodeConfiguration(endpoint: endpoint, name: "lonely")
        configuration.tickMilliseconds = 10
        configuration.stateMachine.livenessTicks = 5
        configuration.stateMachine.initialBackoffTicks = 1
        configuration.stateMachine.maximumBackoffTicks = 2
        configuration.stateMachine.maximumReconnectAttempts = 2
        let worker = WorkerNode(
            configuration: configuration, makeGradientComputer: ToyGradientComputer.factory(),
            logger: quietLogger("test.lonely"), onEvent: recorder.record)
        let outcome = try XCTUnwrap(Background("lonely") { worker.run() }.wait(seconds: Self.safety))
        guard case .failed(let reason) = outcome else { return XCTFail("expected failure, got \(outcome)") }
        XCTAssertTrue(reason.contains("coordinator silent"), reason)
        XCTAssertTrue(reason.contains("2 reconnects failed"), reason)
        XCTAssertTrue(reason.contains(endpoint), reason)
        let attempts = recorder.events.compactMap { event -> Int? in
            if case .connecting(_, let attempt) = event { return attempt }
            return nil
        }
        XCTAssertEqual(attempts, [0, 1, 2], "a fresh socket per reconnect")
    }

    func testAVersionMismatchIsRefusedWithAClearMessageOnBothSides() throws {
        let data = TinyDataset.images(count: 20, seed: 6)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 1, data: data, totalSteps: 2, recorder: recorder)
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let worker = makeWorker(
            endpoint: endpoint, name: "future", adjust: { $0.stateMachine.protocolVersion = ProtocolInfo.version + 1 })
        let outcome = try XCTUnwrap(Background("future") { worker.run() }.wait(seconds: Self.safety))

        guard case .failed(let workerReason) = outcome else { return XCTFail("expected failure, got \(outcome)") }
        XCTAssertTrue(workerReason.contains("refused"), workerReason)
        XCTAssertTrue(workerReason.contains("protocol version mismatch"), workerReason)
        let refusal = try XCTUnwrap(
            recorder.first(within: Self.safety) { event -> String? in
                if case .workerRefused(_, "future", let reason) = event { return reason }
                return nil
            })
        XCTAssertTrue(refusal.contains("worker speaks version \(ProtocolInfo.version + 1)"), refusal)

        coordinator.requestStop(reason: "test over")
        let result = try XCTUnwrap(coordinatorThread.wait(seconds: Self.safety))
        XCTAssertFalse(result.outcome.isFinished)
        XCTAssertTrue(result.outcome.reason.contains("test over"), result.outcome.reason)
    }

    func testAWorkerThatCannotBuildTheModelSaysGoodbye() throws {
        let data = TinyDataset.images(count: 20, seed: 8)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 1, data: data, totalSteps: 2, recorder: recorder)
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let worker = makeWorker(
            endpoint: endpoint, name: "confused", factory: { _, _ in throw ToySettingsError() })
        let outcome = try XCTUnwrap(Background("confused") { worker.run() }.wait(seconds: Self.safety))
        XCTAssertFalse(outcome.isFinished)
        XCTAssertTrue(outcome.reason.contains("cannot build the model"), outcome.reason)
        let death = try XCTUnwrap(
            recorder.first(within: Self.safety) { event -> String? in
                if case .workerDied(let info, _, let reason) = event, info.name == "confused" { return reason }
                return nil
            })
        XCTAssertTrue(death.contains("settings are not toy-softmax-1"), death)
        coordinator.requestStop(reason: "test over")
        XCTAssertNotNil(coordinatorThread.wait(seconds: Self.safety))
    }

    func testRequestStopShutsTheWorkersDownAndBothSidesReturn() throws {
        let data = TinyDataset.images(count: 40, seed: 9)
        let recorder = EventRecorder<CoordinatorNodeEvent>()
        let coordinator = makeCoordinator(workerCount: 2, data: data, totalSteps: 1_000_000, recorder: recorder)
        let coordinatorThread = Background("coordinator") { coordinator.run() }
        let endpoint = try listeningEndpoint(recorder)
        let workerThreads = (0..<2).map { index in
            let worker = makeWorker(endpoint: endpoint, name: "busy-\(index)")
            return Background("busy-\(index)") { worker.run() }
        }
        XCTAssertNotNil(
            recorder.first(within: Self.safety) { event -> Int? in
                if case .stepCompleted(let metrics) = event, metrics.step >= 2 { return metrics.step }
                return nil
            }, "training never got going")
        coordinator.requestStop(reason: "interrupted by the test")

        let result = try XCTUnwrap(coordinatorThread.wait(seconds: Self.safety), "coordinator did not return")
        XCTAssertEqual(result.outcome.isFinished, false)
        XCTAssertTrue(result.outcome.reason.contains("interrupted by the test"), result.outcome.reason)
        XCTAssertEqual(coordinator.model.history.count, result.completedSteps)
        for thread in workerThreads {
            let outcome = try XCTUnwrap(thread.wait(seconds: Self.safety), "a worker did not return")
            XCTAssertTrue(outcome.isFinished, "workers end cleanly on shutdown: \(outcome)")
            XCTAssertTrue(outcome.reason.contains("interrupted by the test"), outcome.reason)
        }
    }
}
