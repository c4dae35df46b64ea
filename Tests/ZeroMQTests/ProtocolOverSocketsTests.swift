// The DataParallel state machines driven over real ZeroMQ sockets (tcp://127.0.0.1, ephemeral port) in
// one thread: a coordinator ROUTER and two worker DEALERs. This checks that the protocol's frames and
// ZeroMQ's routing ids fit together, and doubles as a minimal reference driver for the Training module.
// The "gradient" is TestSupport's synthetic one; ticks are loop iterations, not wall time.
import XCTest
import DataParallel
import TestSupport
import ZeroMQ

final class ProtocolOverSocketsTests: XCTestCase {
    func testCoordinatorAndWorkersTrainOverTCP() throws {
        let context = try Context()
        let router = try context.makeSocket(.router)
        try router.setRouterMandatory(true)
        let endpoint = try router.bind("tcp://127.0.0.1:*")

        var random = ClusterRandom(seed: 5)
        let sampleCount = 30, pixels = 4, parameterCount = 6
        let data = TrainingSamples(
            pixelsPerImage: pixels,
            images: (0..<(sampleCount * pixels)).map { _ in UInt8.random(in: 0...255, using: &random) },
            labels: (0..<sampleCount).map { _ in UInt8.random(in: 0...9, using: &random) })
        var configuration = CoordinatorConfiguration(
            workerCount: 2, batchSize: 8, totalSteps: 6, seed: 11, settings: [7])
        configuration.microBatchSize = 2
        configuration.livenessTicks = 5_000  // Ticks are loop turns here, not 100 ms.
        var coordinator = Coordinator(configuration: configuration, data: data)
        var workers = (0..<2).map { index -> Worker in
            var configuration = WorkerConfiguration(name: "tcp-\(index)")
            configuration.livenessTicks = 5_000
            configuration.incarnation = UInt64(index) << 32
            return Worker(configuration: configuration)
        }
        let dealers = try (0..<2).map { _ -> Socket in
            let dealer = try context.makeSocket(.dealer)
            try dealer.connect(endpoint)
            return dealer
        }
        var shards: [Shard?] = [nil, nil]
        var computations: [(worker: Int, assignment: StepAssignment)] = []
        var weights = [Float](repeating: 0.5, count: parameterCount)
        var completed: [(result: StepResult, weights: [Float])] = []
        var workerOutcomes: [WorkerAction] = []

        func perform(_ actions: [CoordinatorAction]) throws {
            var pending = actions
            while !pending.isEmpty {
                let action = pending.removeFirst()
                switch action {
                case .send(let message, let peer):
                    try router.send([peer.bytes] + message.encode())
                case .stepCompleted(let result):
                    completed.append((result, weights))
                    weights = zip(weights, result.averagedGradient).map { $0 - 0.1 * $1 }
                    pending += coordinator.handle(.weightsUpdated(weights))
                case .failed(let reason):
                    XCTFail("coordinator failed: \(reason)")
                default:
                    break
                }
            }
        }
        func perform(_ actions: [WorkerAction], worker index: Int) throws {
            for action in actions {
                switch action {
                case .send(let message): try dealers[index].send(message.encode())
                case .shardReceived(let shard): shards[index] = shard
                case .computeGradient(let assignment): computations.append((index, assignment))
                case .finished, .failed: workerOutcomes.append(action)
                case .reconnect: XCTFail("no reconnect expected on loopback")
                default: break
                }
            }
        }

        try perform(coordinator.handle(.start(initialWeights: weights)))
        for index in workers.indices { try perform(workers[index].handle(.start), worker: index) }
        var turns = 0
        while (coordinator.phase != .finished || workerOutcomes.count < 2) && turns < 20_000 {
            turns += 1
            _ = try Socket.poll([(router, .readable)] + dealers.map { ($0, .readable) }, timeoutMilliseconds: 5)
            while let frames = try router.receive() {
                let peer = PeerID(frames[0])
                do {
                    try perform(
                        coordinator.handle(.received(try Message.decode(Array(frames.dropFirst())), from: peer)))
                } catch let error as MessageDecodingError {
                    try perform(coordinator.handle(.undecodable(error, from: peer)))
                }
            }
            for index in dealers.indices {
                while let frames = try dealers[index].receive() {
                    try perform(workers[index].handle(.received(try Message.decode(frames))), worker: index)
                }
            }
            let due = computations
            computations = []
            for (index, assignment) in due {
                let report = SimulatedCluster.syntheticReport(
                    shard: try XCTUnwrap(shards[index]), assignment: assignment, tree: coordinator.tree)
                try perform(workers[index].handle(.gradientComputed(report)), worker: index)
            }
            try perform(coordinator.handle(.tick))
            for index in workers.indices { try perform(workers[index].handle(.tick), worker: index) }
        }

        XCTAssertEqual(coordinator.phase, .finished, "after \(turns) turns")
        XCTAssertEqual(completed.map(\.result.step), Array(0..<6))
        XCTAssertEqual(workerOutcomes.count, 2)
        XCTAssertTrue(
            workerOutcomes.allSatisfy { if case .finished = $0 { return true } else { return false } },
            "\(workerOutcomes)")
        // Each step's mean equals the naive mean over the whole global batch.
        for (result, stepWeights) in completed {
            XCTAssertEqual(result.contributors.count, 2)
            let (naive, samples, _) = SimulatedCluster.naiveMeanGradient(
                plan: coordinator.plan, data: data, step: result.step, weights: stepWeights,
                blocks: Array(0..<coordinator.plan.blockCount))
            XCTAssertEqual(result.sampleCount, samples)
            let worst = zip(result.averagedGradient, naive).map { abs(Double($0) - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5, "step \(result.step): worst difference \(worst)")
        }
    }
}
