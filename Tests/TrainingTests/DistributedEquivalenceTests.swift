// The heart of synchronous data parallelism, with the real network: the workers' summed shard gradients,
// combined as the sample-weighted mean, equal the single-process gradient of the same global batch at the
// same weights, dropout and augmentation included (each sample's randomness is keyed by its training-set
// index, not by where it is computed).
import ConvNet
import DataParallel
import Foundation
import MNIST
import TestSupport
import Training
import XCTest

final class DistributedEquivalenceTests: XCTestCase {
    func testWeightedMeanOfShardGradientsEqualsTheFullBatchGradient() throws {
        var configuration = TrainingConfiguration()
        configuration.model = ModelPreset.classic.name  // has dropout
        configuration.augment = true
        configuration.batchSize = 48
        configuration.seed = 17
        let train = TinyDataset.images(count: 150, seed: 21)
        let host = try NetworkHost(
            configuration: configuration, testSet: TinyDataset.images(count: 10), trainCount: train.count,
            totalSteps: 10)
        let weights = host.parameters
        for workerCount in [1, 2, 3, 4] {
            let plan = BatchPlan(
                sampleCount: train.count, workerCount: workerCount, batchSize: configuration.batchSize,
                seed: configuration.seed)
            for step in [0, 2, 3] {  // step 3 is the short last batch of epoch 0 (150 = 3 * 48 + 6)
                let batch = plan.globalBatch(step: step)
                let epoch = plan.epoch(ofStep: step)
                // The workers, as their processes would compute it.
                var summed = [Double](repeating: 0, count: weights.count)
                var samples = 0
                var lossSum = 0.0
                for (worker, indices) in plan.localAssignments(of: batch).enumerated() {
                    let range = plan.shardRange(worker: worker)
                    let shard = train.subset(range)
                    let computer = try NetworkGradientComputer(
                        settings: host.settings(),
                        shard: Shard(pixelsPerImage: 784, images: shard.pixels, labels: shard.labels, settings: []),
                        placement: ShardPlacement(workerIndex: worker, workerCount: workerCount))
                    let report = computer.gradient(
                        for: StepAssignment(step: step, epoch: epoch, weights: weights, sampleIndices: indices))
                    XCTAssertEqual(report.sampleCount, indices.count)
                    for (index, value) in report.gradient.enumerated() { summed[index] += Double(value) }
                    samples += report.sampleCount
                    lossSum += report.lossSum
                }
                let mean = summed.map { $0 / Double(samples) }

                // One process, the whole batch, the same weights and seeds.
                let reference = BatchGradientComputer(
                    network: try Network(architecture: host.network.architecture, seed: 0))
                reference.network.parameters = weights
                let statistics = reference.computeSummedGradient(
                    images: train, indices: batch, dropoutSeed: TrainingSeeds.dropout(configuration.seed, step: step),
                    augmentationSeed: TrainingSeeds.augmentation(configuration.seed, epoch: epoch))
                let expected = reference.network.gradients.map { Double($0) / Double(statistics.count) }

                XCTAssertEqual(samples, batch.count)
                XCTAssertEqual(lossSum, statistics.lossSum, accuracy: 1e-4 * abs(statistics.lossSum))
                let difference = zip(mean, expected).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
                let norm = expected.map { $0 * $0 }.reduce(0, +).squareRoot()
                let relative = difference / norm
                let worst = zip(mean, expected).enumerated().max { abs($0.1.0 - $0.1.1) < abs($1.1.0 - $1.1.1) }
                print(
                    String(
                        format: "%d workers, step %d: relative difference %.2e (worst at [%d]: %.8g vs %.8g)",
                        workerCount, step, relative, worst?.offset ?? -1, worst?.element.0 ?? 0, worst?.element.1 ?? 0))
                XCTAssertLessThanOrEqual(relative, 1e-5, "\(workerCount) workers, step \(step)")
                XCTAssertGreaterThan(norm, 0)
            }
        }
    }
}
