// A run is a pure function of (data, configuration, seed): with the real network, dropout and
// augmentation, a few steps give the same weights and moving average, bit for bit, whether one
// process computes every micro-batch with 1, 2 or 3 threads, or a coordinator gathers them from 1, 2 or
// 3 workers (uneven splits of the blocks, workers with different thread counts), through the real
// coordinator state machine and the wire codec. A last, partial batch is included.
import ConvNet
import DataParallel
import Foundation
import MNIST
import TestSupport
import Training
import XCTest

final class DistributedEquivalenceTests: XCTestCase {
    /// 300 samples in batches of 160 (5 micro-batches of 32): 2 steps per epoch, the second of 140.
    private func configuration(model: String = ModelPreset.classic.name) -> TrainingConfiguration {
        var configuration = TrainingConfiguration()
        configuration.model = model  // classic has dropout
        configuration.augment = true  // affine: sampled between pixels
        configuration.rotation = 12
        configuration.scale = 0.1
        configuration.shear = 8
        configuration.shift = 2.5
        configuration.elastic = 20  // and distorted elastically
        configuration.batchSize = 160
        configuration.epochs = 2
        configuration.seed = 17
        return configuration
    }

    private let train = TinyDataset.images(count: 300, seed: 21)

    override func tearDown() { ComputeThreads.configure(threads: 2) }

    /// The weights and moving average after every step of the run, as bit patterns.
    private typealias Trace = [[UInt32]]

    /// One process computes every micro-batch (`mnist train` without workers).
    private func singleProcess(threads: Int, model: String = ModelPreset.classic.name) throws -> Trace {
        ComputeThreads.configure(threads: threads)
        let configuration = configuration(model: model)
        let step = try TrainingStep(configuration: configuration, sampleCount: train.count)
        let computer = MicroBatchComputer(
            network: try Network(architecture: step.network.architecture, seed: 0),
            samples: step.samplesInKeyOrder(train), firstKey: 0, seed: configuration.seed,
            augmentation: configuration.augmentation, tree: step.tree)
        var trace: Trace = []
        for index in 0..<step.totalSteps {
            let (result, _) = step.runLocally(step: index, computer: computer)
            XCTAssertEqual(result.sampleCount, index % 2 == 0 ? 160 : 140)
            trace.append((step.network.parameters + step.modelParameters).map(\.bitPattern))
        }
        return trace
    }

    /// A coordinator state machine and in-process workers, every message through the codec.
    private func coordinated(workerThreads: [Int], model: String = ModelPreset.classic.name) throws -> Trace {
        var host = try NetworkHost(
            configuration: configuration(model: model), testSet: TinyDataset.images(count: 10), trainCount: 300)
        var coordinatorConfiguration = CoordinatorConfiguration(
            workerCount: workerThreads.count, batchSize: 160, totalSteps: host.step.totalSteps, seed: 17,
            settings: host.settings())
        coordinatorConfiguration.livenessTicks = 1_000
        var coordinator = Coordinator(
            configuration: coordinatorConfiguration,
            data: TrainingSamples(pixelsPerImage: 784, images: train.pixels, labels: train.labels))
        let peers = workerThreads.indices.map { PeerID("worker-\($0)") }
        var computers: [PeerID: NetworkGradientComputer] = [:]
        var trace: Trace = []
        var inbox = coordinator.handle(.start(initialWeights: host.parameters))
        for (index, peer) in peers.enumerated() {
            inbox += coordinator.handle(
                .received(
                    .hello(
                        protocolVersion: ProtocolInfo.version, workerName: "\(peer)", threads: 1,
                        session: UInt64(index + 1) << 16),
                    from: peer))
        }
        while coordinator.phase == .joining || coordinator.phase == .training, !inbox.isEmpty {
            let action = inbox.removeFirst()
            switch action {
            case .send(let message, let peer):
                let delivered = try Message.decode(message.encode())
                guard let index = peers.firstIndex(of: peer) else { continue }
                if case .shard(let shard) = delivered {
                    computers[peer] = try NetworkGradientComputer(settings: shard.settings, shard: shard)
                    inbox += coordinator.handle(
                        .received(.ready(firstKey: shard.firstKey, sampleCount: shard.sampleCount), from: peer))
                }
                if case .step(let assignment) = delivered, let computer = computers[peer] {
                    ComputeThreads.configure(threads: workerThreads[index])
                    let report = try Message.decode(Message.gradient(computer.gradient(for: assignment)).encode())
                    inbox += coordinator.handle(.received(report, from: peer))
                }
            case .stepCompleted(let result):
                _ = host.apply(result)
                trace.append((host.parameters + host.modelParameters).map(\.bitPattern))
                inbox += coordinator.handle(.weightsUpdated(host.parameters))
            case .failed(let reason):
                XCTFail(reason)
            default:
                break
            }
        }
        XCTAssertEqual(coordinator.phase, .finished)
        return trace
    }

    func testEveryThreadAndWorkerCountGivesTheSameBits() throws {
        let reference = try singleProcess(threads: 1)
        XCTAssertEqual(reference.count, 4)
        XCTAssertNotEqual(reference[0], reference[1], "the weights move")
        let runs: [(String, Trace)] = [
            ("single process, 2 threads", try singleProcess(threads: 2)),
            ("single process, 3 threads", try singleProcess(threads: 3)),
            ("1 worker", try coordinated(workerThreads: [2])),
            ("2 workers (2 + 3 blocks), threads 2 and 1", try coordinated(workerThreads: [2, 1])),
            ("3 workers (1 + 2 + 2 blocks)", try coordinated(workerThreads: [1, 1, 2])),
            ("5 workers, one block each", try coordinated(workerThreads: [1, 2, 1, 2, 1])),
        ]
        for (mode, trace) in runs {
            XCTAssertEqual(trace.count, reference.count, mode)
            for (step, (bits, expected)) in zip(trace, reference).enumerated() {
                let differing = zip(bits, expected).filter { $0 != $1 }.count
                XCTAssertEqual(differing, 0, "\(mode), step \(step): \(differing) of \(bits.count) values differ")
            }
        }
    }

    /// Batch normalisation per micro-batch ("ghost" batches) keeps the step bit-identical too.
    func testBatchNormalizationGivesTheSameBitsForEveryThreadAndWorkerCount() throws {
        let model = ModelPreset.fast.name
        XCTAssertTrue(try Network(architecture: ModelPreset.fast.architecture, seed: 0).hasBatchNormalization)
        let reference = try singleProcess(threads: 1, model: model)
        XCTAssertNotEqual(reference[0], reference[1], "the weights move")
        let runs: [(String, Trace)] = [
            ("single process, 3 threads", try singleProcess(threads: 3, model: model)),
            ("2 workers (2 + 3 blocks), threads 2 and 1", try coordinated(workerThreads: [2, 1], model: model)),
            ("5 workers, one block each", try coordinated(workerThreads: [1, 2, 1, 2, 1], model: model)),
        ]
        for (mode, trace) in runs {
            XCTAssertEqual(trace.count, reference.count, mode)
            for (step, (bits, expected)) in zip(trace, reference).enumerated() {
                let differing = zip(bits, expected).filter { $0 != $1 }.count
                XCTAssertEqual(differing, 0, "\(mode), step \(step): \(differing) of \(bits.count) values differ")
            }
        }
    }

    /// The step's mean gradient is the mean over the batch: within rounding of an independent sum of
    /// per-sample gradients computed one sample at a time with the plain engine entry point.
    func testTheMeanGradientIsTheBatchMean() throws {
        ComputeThreads.configure(threads: 2)
        var configuration = configuration()
        configuration.augment = false
        let step = try TrainingStep(configuration: configuration, sampleCount: train.count)
        let samples = step.samplesInKeyOrder(train)
        let computer = MicroBatchComputer(
            network: try Network(architecture: step.network.architecture, seed: 0), samples: samples, firstKey: 0,
            seed: configuration.seed, augmentation: nil, tree: step.tree)
        let weights = step.network.parameters
        let (result, _) = step.runLocally(step: 1, computer: computer)
        let keys = step.plan.microBatches(step: 1).flatMap { $0 }
        XCTAssertEqual(result.sampleCount, keys.count)
        let network = try Network(architecture: step.network.architecture, seed: 0)
        network.parameters = weights
        var expected = [Double](repeating: 0, count: weights.count)
        for key in keys {
            network.zeroGradients()
            let image = InputNormalization.normalized(Array(samples.pixels[(key * 784)..<((key + 1) * 784)]))
            network.accumulateGradients(
                images: image, labels: [samples.labels[key]], dropoutSeed: TrainingSeeds.dropout(17, step: 1),
                sampleKeys: [key])
            for (index, value) in network.gradients.enumerated() {
                expected[index] += Double(value) / Double(keys.count)
            }
        }
        let difference = zip(result.averagedGradient, expected).map { (Double($0) - $1) * (Double($0) - $1) }
            .reduce(0, +).squareRoot()
        let norm = expected.map { $0 * $0 }.reduce(0, +).squareRoot()
        print(String(format: "mean gradient: relative difference %.2e", difference / norm))
        XCTAssertGreaterThan(norm, 0)
        XCTAssertLessThanOrEqual(difference / norm, 1e-5)
    }
}
