// A toy model for the node tests, and helpers to run nodes on threads: softmax regression on the 784
// raw pixels (W [10, 784] then b [10] in one flat slab), a ModelHost doing plain SGD that records every
// step, and a GradientComputer summing per-sample gradients in Double. Small enough to compute the
// full-batch reference naively in the test; no ConvNet types.
import DataParallel
import Foundation
import Logging
import MNIST
import TestSupport
import XCTest

@testable import Training

/// Softmax regression: z = W x + b, p = softmax(z), loss = -log p[label]; x = pixel / 255.
enum ToySoftmax {
    static let classes = 10
    static let settingsMagic = Array("toy-softmax-1".utf8)

    static func parameterCount(pixels: Int) -> Int { classes * pixels + classes }

    /// Summed gradient, loss sum and correct count of `indices` of `images`/`labels`, in Double.
    static func summedGradient(
        weights: [Float], pixels: Int, images: [UInt8], labels: [UInt8], indices: [Int]
    ) -> (gradient: [Double], lossSum: Double, correct: Int) {
        var gradient = [Double](repeating: 0, count: weights.count)
        var lossSum = 0.0
        var correct = 0
        let biasOffset = classes * pixels
        for sample in indices {
            let x = images[(sample * pixels)..<((sample + 1) * pixels)].map { Double($0) / 255 }
            var z = (0..<classes).map { k in
                var sum = Double(weights[biasOffset + k])
                for j in 0..<pixels { sum += Double(weights[k * pixels + j]) * x[j] }
                return sum
            }
            let largest = z.max() ?? 0
            z = z.map { exp($0 - largest) }
            let total = z.reduce(0, +)
            let p = z.map { $0 / total }
            let label = Int(labels[sample])
            lossSum += -log(max(p[label], 1e-300))
            if p.indices.max(by: { p[$0] < p[$1] }) == label { correct += 1 }
            for k in 0..<classes {
                let delta = p[k] - (k == label ? 1 : 0)
                for j in 0..<pixels { gradient[k * pixels + j] += delta * x[j] }
                gradient[biasOffset + k] += delta
            }
        }
        return (gradient, lossSum, correct)
    }

    static func initialWeights(pixels: Int, seed: UInt64) -> [Float] {
        var random = ClusterRandom(seed: seed)
        return (0..<parameterCount(pixels: pixels)).map { _ in Float.random(in: -0.01...0.01, using: &random) }
    }
}

/// Plain SGD; records the weights and averaged gradient of every step.
struct ToyModelHost: ModelHost {
    var parameters: [Float]
    var learningRate: Float = 0.1
    var history: [(step: Int, weights: [Float], averagedGradient: [Float])] = []
    var evaluatedEpochs: [Int] = []
    var settingsBytes = ToySoftmax.settingsMagic
    /// How long each evaluation takes (off the node's thread).
    var evaluationSeconds = 0.0

    mutating func apply(_ result: StepResult) -> Double {
        history.append((result.step, parameters, result.averagedGradient))
        for index in parameters.indices { parameters[index] -= learningRate * result.averagedGradient[index] }
        return Double(learningRate)
    }

    func settings() -> [UInt8] { settingsBytes }

    mutating func evaluation(ofEpoch epoch: Int) -> (@Sendable () -> EpochEvaluation?)? {
        evaluatedEpochs.append(epoch)
        let seconds = evaluationSeconds
        return {
            if seconds > 0 { Thread.sleep(forTimeInterval: seconds) }
            return EpochEvaluation(accuracy: Double(epoch), meanLoss: 0, seconds: seconds)
        }
    }
}

struct ToySettingsError: Error, CustomStringConvertible {
    var description: String { "settings are not toy-softmax-1" }
}

/// Sums per-sample gradients of its shard; `beforeStep` lets a test act at a given step.
struct ToyGradientComputer: GradientComputer {
    let pixelsPerImage: Int
    var images: [UInt8]
    var labels: [UInt8]
    /// Where each key's sample is in `images` and `labels`.
    var indexOfKey: [Int: Int] = [:]
    var beforeStep: (Int) -> Void = { _ in }

    init(shard: Shard, beforeStep: @escaping (Int) -> Void) {
        pixelsPerImage = shard.pixelsPerImage
        images = []
        labels = []
        self.beforeStep = beforeStep
        add(shard)
    }

    mutating func add(_ shard: Shard) {
        for local in 0..<shard.sampleCount { indexOfKey[shard.firstKey + local] = labels.count + local }
        images += shard.images
        labels += shard.labels
    }

    static func factory(beforeStep: @escaping (Int) -> Void = { _ in }) -> GradientComputerFactory {
        { settings, shard in
            guard settings == ToySoftmax.settingsMagic else { throw ToySettingsError() }
            return ToyGradientComputer(shard: shard, beforeStep: beforeStep)
        }
    }

    mutating func gradient(for assignment: StepAssignment) -> GradientReport {
        beforeStep(assignment.step)
        // Each micro-batch is sent as its own piece (a leaf is a node of any tree), so the toy needs
        // no tree of its own.
        let pieces = assignment.microBatchIndices.map { microBatch, keys in
            let indices = keys.map { indexOfKey[Int($0)] ?? 0 }
            let result = ToySoftmax.summedGradient(
                weights: assignment.weights, pixels: pixelsPerImage, images: images, labels: labels, indices: indices)
            return GradientPiece(
                blocks: microBatch.block..<(microBatch.block + 1), sampleCount: indices.count,
                correctCount: result.correct, lossSum: result.lossSum, gradient: result.gradient.map { Float($0) })
        }
        return GradientReport(step: assignment.step, pieces: pieces)
    }
}

/// Runs `body` on its own thread; `wait` returns its value, or nil if it is not done in time.
// @unchecked Sendable: `value` is written once by the thread before `done` is signalled and read only
// after a wait on `done` succeeded.
final class Background<Value>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: Value?

    init(_ name: String, _ body: @escaping @Sendable () -> Value) {
        let thread = Thread { [self] in
            value = body()
            done.signal()
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    func wait(seconds: Double) -> Value? {
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        done.signal()  // Later waits return at once.
        return value
    }
}

/// A thread-safe list of events, with a way to wait for one.
// @unchecked Sendable: `stored` is read and written under `condition`'s lock.
final class EventRecorder<Event>: @unchecked Sendable {
    private let condition = NSCondition()
    private var stored: [Event] = []

    func record(_ event: Event) {
        condition.lock()
        stored.append(event)
        condition.broadcast()
        condition.unlock()
    }

    var events: [Event] {
        condition.lock()
        defer { condition.unlock() }
        return stored
    }

    /// Waits until an event satisfies `match` (returning what it extracts), or nil after `seconds`.
    func first<T>(within seconds: Double, _ match: (Event) -> T?) -> T? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let found = stored.lazy.compactMap(match).first { return found }
            guard condition.wait(until: deadline) else { return stored.lazy.compactMap(match).first }
        }
    }
}

func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}
