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
