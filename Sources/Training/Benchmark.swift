// Throughput figures for `mnist bench`: training images/s of a preset at a given batch size (the
// training step exactly as `mnist train` runs it: inputs prepared and shifted, micro-batches, the
// tree, the optimizer and the moving average), and inference images/s at the best of a few batch
// sizes. Uses random pixels, so it needs no data set; it prints nothing (the CLI does). Not a test:
// no time limits.
import ConvNet
import Foundation
import Host
import MNIST

/// Measured throughput.
public struct BenchmarkFigures: Sendable, Codable, Equatable {
    public var model: String
    public var threads: Int
    public var trainingBatchSize: Int
    /// Forward + backward + optimizer step, images per second.
    public var trainingImagesPerSecond: Double
    /// The inference batch size that gave the best rate, and that rate.
    public var inferenceBatchSize: Int
    public var inferenceImagesPerSecond: Double
    /// The same two rates per second of CPU time used by the process (all threads). Less
    /// disturbed than the wall-clock rates when the machine is shared: time the process waits
    /// for a core does not count.
    public var trainingImagesPerCPUSecond: Double
    public var inferenceImagesPerCPUSecond: Double
    /// Microseconds of one thread to prepare one 28x28 training input: normalised only, shifted by
    /// whole pixels (`--rotation 0 --scale 0 --shear 0`), by the default affine augmentation, and by it
    /// with an elastic distortion (`--elastic 34`).
    public var inputMicroseconds: InputPreparation
}

/// Microseconds per image of each way of preparing a training input.
public struct InputPreparation: Sendable, Codable, Equatable {
    public var plain: Double
    public var wholePixelShift: Double
    public var affine: Double
    public var elastic: Double
}

/// Seconds of CPU time this process has used, all threads.
func processCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Throughput measurements.
public enum Benchmark {
    /// Times `Augmentation.apply` (and plain normalisation) on 256 random 28x28 images, one thread,
    /// about `seconds` each.
    static func inputPreparation(seconds: Double) -> InputPreparation {
        var generator = SplitMix64(seed: 3)
        let count = 256, side = 28, perImage = side * side
        let pixels = (0..<(count * perImage)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        var output = [Float](repeating: 0, count: perImage)
        let defaults = TrainingConfiguration()
        let shift = Augmentation(shift: defaults.shift.rounded())
        let clock = ContinuousClock()
        func time(_ augmentation: Augmentation?) -> Double {
            var images = 0
            let start = clock.now
            pixels.withUnsafeBufferPointer { pixels in
                InputNormalization.table.withUnsafeBufferPointer { table in
                    output.withUnsafeMutableBufferPointer { output in
                        while (clock.now - start).seconds < seconds {
                            for index in 0..<count {
                                let image = UnsafeBufferPointer(
                                    rebasing: pixels[(index * perImage)..<((index + 1) * perImage)])
                                if let augmentation {
                                    augmentation.apply(
                                        pixels: image, rows: side, columns: side, key: images, epochSeed: 5,
                                        table: table, output: output)
                                } else {
                                    for offset in 0..<perImage { output[offset] = table[Int(image[offset])] }
                                }
                                images += 1
                            }
                        }
                    }
                }
            }
            return (clock.now - start).seconds * 1e6 / Double(max(1, images))
        }
        let affine = defaults.augmentation ?? Augmentation(shift: 2, rotation: 10, scale: 0.1)
        var elastic = affine
        elastic.elastic = 34
        return InputPreparation(
            plain: time(nil), wholePixelShift: time(shift), affine: time(affine), elastic: time(elastic))
    }

    /// Measures `model` for about `seconds` each for training and inference.
    public static func run(
        model: ModelPreset = .classic, threads: Int = AvailableCPUs.count,
        trainingBatchSize: Int = 128, chunkSize: Int? = nil, blasThreads: Int? = nil,
        inferenceBatchSizes: [Int] = [128, 256, 512, 1000], seconds: Double = 3
    ) throws -> BenchmarkFigures {
        ComputeThreads.configure(threads: threads)
        if let blasThreads { BLAS.threadCount = blasThreads }
        let network = try Network(architecture: model.architecture, seed: 1)
        if let chunkSize { network.chunkSize = chunkSize }
        var generator = SplitMix64(seed: 2)
        let largest = inferenceBatchSizes.max() ?? 1
        let images = (0..<(largest * network.inputCount)).map { _ in generator.nextUnitFloat() * 2 - 0.5 }
        let clock = ContinuousClock()

        // The training step exactly as `mnist train` runs it (micro-batches, tree, optimizer, moving
        // average), on random pixels: 8 batches of samples, so every step takes a full batch.
        var configuration = TrainingConfiguration()
        configuration.model = model.name
        configuration.batchSize = trainingBatchSize
        configuration.epochs = 1000
        configuration.threads = threads
        let sampleCount = 8 * trainingBatchSize
        let step = try TrainingStep(configuration: configuration, sampleCount: sampleCount)
        let side = Int(Double(network.inputCount).squareRoot())
        let samples = LabeledImages(
            rows: side, columns: side,
            pixels: (0..<(sampleCount * network.inputCount)).map { _ in UInt8(generator.nextInt(below: 256)) },
            labels: (0..<sampleCount).map { _ in UInt8(generator.nextInt(below: network.classCount)) })
        let computerNetwork = try Network(architecture: model.architecture, seed: 0)
        if let chunkSize { computerNetwork.chunkSize = chunkSize }
        let computer = MicroBatchComputer(
            network: computerNetwork, samples: samples, firstKey: 0, seed: 1,
            augmentation: TrainingConfiguration().augmentation,
            tree: step.tree)
        func trainStep(_ index: Int) { _ = step.runLocally(step: index % step.plan.stepsPerEpoch, computer: computer) }
        trainStep(0)  // warm-up: allocates scratch
        var steps = 0
        let trainCPUStart = processCPUSeconds()
        let trainStart = clock.now
        while (clock.now - trainStart).seconds < seconds {
            trainStep(steps)
            steps += 1
        }
        let trainingRate = Double(steps * trainingBatchSize) / (clock.now - trainStart).seconds
        let trainingCPURate = Double(steps * trainingBatchSize) / (processCPUSeconds() - trainCPUStart)

        // Inference as model files run it: batch normalisation folded away.
        let inference = network.hasBatchNormalization ? try network.folded() : network
        var bestBatch = inferenceBatchSizes.first ?? 256, bestRate = 0.0, bestCPURate = 0.0
        for batch in inferenceBatchSizes {
            let input = Array(images[0..<(batch * network.inputCount)])
            _ = inference.probabilities(images: input)
            var processed = 0
            let cpuStart = processCPUSeconds()
            let start = clock.now
            while (clock.now - start).seconds < seconds / Double(max(1, inferenceBatchSizes.count)) {
                _ = inference.probabilities(images: input)
                processed += batch
            }
            let rate = Double(processed) / (clock.now - start).seconds
            let cpuRate = Double(processed) / (processCPUSeconds() - cpuStart)
            if rate > bestRate { (bestBatch, bestRate) = (batch, rate) }
            bestCPURate = max(bestCPURate, cpuRate)
        }
        return BenchmarkFigures(
            model: model.name, threads: threads, trainingBatchSize: trainingBatchSize,
            trainingImagesPerSecond: trainingRate,
            inferenceBatchSize: bestBatch, inferenceImagesPerSecond: bestRate,
            trainingImagesPerCPUSecond: trainingCPURate, inferenceImagesPerCPUSecond: bestCPURate,
            inputMicroseconds: inputPreparation(seconds: min(1, seconds / 3)))
    }
}
