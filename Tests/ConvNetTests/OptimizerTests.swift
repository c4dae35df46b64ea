// Optimizer updates against hand-computed values, and schedule end points.
import XCTest
import TestSupport
import ConvNet

final class OptimizerTests: XCTestCase {
    func testSGDWithMomentumMatchesHandComputation() {
        var optimizer = Optimizer(settings: OptimizerSettings(kind: .sgd, momentum: 0.5), parameterCount: 2)
        var parameters: [Float] = [1, -2]
        optimizer.apply(gradient: [0.5, 1], to: &parameters, learningRate: 0.1)
        XCTAssertEqual(parameters, [0.95, -2.1])
        optimizer.apply(gradient: [0.5, 1], to: &parameters, learningRate: 0.1)
        // v = 0.5 * 0.5 + 0.5 = 0.75; v = 0.5 * 1 + 1 = 1.5
        XCTAssertEqual(parameters[0], 0.875, accuracy: 1e-6)
        XCTAssertEqual(parameters[1], -2.25, accuracy: 1e-6)
    }

    func testAdamFirstStepMovesByTheLearningRate() {
        var optimizer = Optimizer(settings: OptimizerSettings(kind: .adam), parameterCount: 3)
        var parameters: [Float] = [0, 0, 0]
        optimizer.apply(gradient: [3, -0.01, 0], to: &parameters, learningRate: 0.01)
        // First bias-corrected step is lr * sign(g) (up to epsilon).
        XCTAssertEqual(parameters[0], -0.01, accuracy: 1e-6)
        XCTAssertEqual(parameters[1], 0.01, accuracy: 1e-5)
        XCTAssertEqual(parameters[2], 0)
        XCTAssertEqual(optimizer.step, 1)
    }

    func testWeightDecayShrinksParameters() {
        var optimizer = Optimizer(
            settings: OptimizerSettings(kind: .sgd, momentum: 0, weightDecay: 0.1), parameterCount: 1)
        var parameters: [Float] = [2]
        optimizer.apply(gradient: [0], to: &parameters, learningRate: 0.5)
        XCTAssertEqual(parameters[0], 1.9, accuracy: 1e-6)
    }

    /// Slabs whose length is not a multiple of the vector width, split over threads, give exactly
    /// what the scalar formulas give, element by element, over several steps.
    func testBothOptimizersMatchTheScalarFormulasBitForBit() {
        let count = 40_000 + 5  // Several threads' chunks, and a partial vector at the end.
        var random = SplitMix64(seed: 11)
        for kind in OptimizerKind.allCases {
            let settings = OptimizerSettings(kind: kind, momentum: 0.8, weightDecay: 0.01)
            var optimizer = Optimizer(settings: settings, parameterCount: count)
            var parameters = (0..<count).map { _ in random.nextUnitFloat() * 2 - 1 }
            var expected = parameters
            var first = [Float](repeating: 0, count: count), second = first
            for step in 1...3 {
                let gradient = (0..<count).map { _ in random.nextUnitFloat() - 0.5 }
                let rate: Float = 0.01 * Float(step)
                optimizer.apply(gradient: gradient, to: &parameters, learningRate: rate)
                for i in 0..<count {
                    let g = gradient[i], decay = settings.weightDecay
                    switch kind {
                    case .sgd:
                        first[i] = settings.momentum * first[i] + (g + decay * expected[i])
                        expected[i] -= rate * first[i]
                    case .adam:
                        let correction1 = 1 - Float(pow(Double(settings.beta1), Double(step)))
                        let correction2 = 1 - Float(pow(Double(settings.beta2), Double(step)))
                        first[i] = settings.beta1 * first[i] + (1 - settings.beta1) * g
                        second[i] = settings.beta2 * second[i] + (1 - settings.beta2) * g * g
                        let denominator = second[i].squareRoot() / correction2.squareRoot() + settings.epsilon
                        expected[i] -= (rate / correction1) * first[i] / denominator + rate * decay * expected[i]
                    }
                }
                XCTAssertEqual(
                    parameters.map(\.bitPattern), expected.map(\.bitPattern), "\(kind), step \(step)")
            }
        }
    }

    func testSchedules() {
        XCTAssertEqual(LearningRateSchedule.constant.learningRate(peak: 0.1, step: 50, totalSteps: 100), 0.1)
        XCTAssertEqual(
            LearningRateSchedule.cosine.learningRate(peak: 0.1, step: 0, totalSteps: 100), 0.1, accuracy: 1e-7)
        XCTAssertEqual(
            LearningRateSchedule.cosine.learningRate(peak: 0.1, step: 50, totalSteps: 100), 0.05, accuracy: 1e-6)
        XCTAssertEqual(
            LearningRateSchedule.cosine.learningRate(peak: 0.1, step: 100, totalSteps: 100), 0, accuracy: 1e-7)
        let oneCycle = LearningRateSchedule.oneCycle
        XCTAssertEqual(oneCycle.learningRate(peak: 0.1, step: 0, totalSteps: 100), 0.004, accuracy: 1e-6)
        XCTAssertEqual(oneCycle.learningRate(peak: 0.1, step: 15, totalSteps: 100), 0.1, accuracy: 1e-6)
        XCTAssertEqual(oneCycle.learningRate(peak: 0.1, step: 100, totalSteps: 100), 1e-5, accuracy: 1e-7)
        XCTAssertEqual(LearningRateSchedule(rawValue: "one-cycle"), .oneCycle)
    }
}
