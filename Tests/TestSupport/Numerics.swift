// Numerical test helpers shared by every test target: tolerant comparison of Float arrays that
// reports the worst mismatch, a central finite-difference gradient checker whose reference is
// computed in Double, and a seeded generator. Generic over arrays and closures: it knows no layers.
import XCTest

/// The largest disagreement between two arrays.
public struct Mismatch: CustomStringConvertible {
    public var index: Int
    public var actual: Double
    public var expected: Double
    /// |actual - expected|.
    public var absoluteError: Double { abs(actual - expected) }
    /// absoluteError / max(|expected|, tiny).
    public var relativeError: Double { absoluteError / max(abs(expected), 1e-30) }

    public var description: String {
        "worst mismatch at [\(index)]: actual \(actual), expected \(expected), abs error \(absoluteError), rel error \(relativeError)"
    }
}

/// The element with the largest `|a - e| - relativeTolerance * |e|`, i.e. the one that most
/// nearly (or most badly) breaks `|a - e| <= absoluteTolerance + relativeTolerance * |e|`.
public func worstMismatch<A: BinaryFloatingPoint, E: BinaryFloatingPoint>(
    _ actual: [A], _ expected: [E], relativeTolerance: Double = 0
) -> Mismatch? {
    precondition(actual.count == expected.count, "arrays differ in length: \(actual.count) vs \(expected.count)")
    var worst: Mismatch?
    var worstExcess = -Double.infinity
    for index in actual.indices {
        let a = Double(actual[index]), e = Double(expected[index])
        let excess = a.isNaN || e.isNaN ? Double.infinity : abs(a - e) - relativeTolerance * abs(e)
        if excess > worstExcess {
            worstExcess = excess
            worst = Mismatch(index: index, actual: a, expected: e)
        }
    }
    return worst
}

/// Asserts `|a - e| <= absoluteTolerance + relativeTolerance * |e|` element-wise and prints the
/// worst mismatch whether or not it passes, so a log shows how close every check came.
public func assertClose<A: BinaryFloatingPoint, E: BinaryFloatingPoint>(
    _ actual: [A], _ expected: [E], absoluteTolerance: Double, relativeTolerance: Double = 0,
    _ label: String, file: StaticString = #filePath, line: UInt = #line
) {
    guard actual.count == expected.count else {
        XCTFail("\(label): lengths differ, \(actual.count) vs \(expected.count)", file: file, line: line)
        return
    }
    guard let worst = worstMismatch(actual, expected, relativeTolerance: relativeTolerance) else { return }
    let bound = absoluteTolerance + relativeTolerance * abs(worst.expected)
    let passed = worst.absoluteError <= bound
    print("\(label): \(worst) (bound \(bound)) \(passed ? "ok" : "FAILED")")
    XCTAssertTrue(passed, "\(label): \(worst) exceeds \(bound)", file: file, line: line)
}

/// Central finite differences computed in Double.
public enum FiniteDifference {
    /// d f / d x[i] ≈ (f(x + h e_i) - f(x - h e_i)) / (x_i⁺ - x_i⁻) for each `i` in `indices`
    /// (all by default). The perturbed points are rounded to Float, and the denominator uses the
    /// rounded values, so the only error left is the Float rounding inside `function`
    /// plus O(h²) curvature.
    public static func gradient(
        of function: ([Float]) -> Double, at point: [Float], step: Float, indices: [Int]? = nil
    ) -> [Double] {
        var x = point
        return (indices ?? Array(point.indices)).map { index in
            let original = point[index]
            let up = original + step, down = original - step
            x[index] = up
            let fUp = function(x)
            x[index] = down
            let fDown = function(x)
            x[index] = original
            return (fUp - fDown) / (Double(up) - Double(down))
        }
    }

    /// Compares an analytic gradient with the finite-difference one at `indices`, asserting
    /// `|analytic - numeric| <= tolerance * max(1, max |numeric|)` and printing the worst mismatch.
    @discardableResult
    public static func check(
        analytic: [Float], of function: ([Float]) -> Double, at point: [Float], step: Float,
        tolerance: Double, indices: [Int]? = nil, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) -> Mismatch? {
        let chosen = indices ?? Array(point.indices)
        let numeric = gradient(of: function, at: point, step: step, indices: chosen)
        let picked = chosen.map { analytic[$0] }
        let scale = max(1, numeric.map(abs).max() ?? 0)
        assertClose(picked, numeric, absoluteTolerance: tolerance * scale, label, file: file, line: line)
        return worstMismatch(picked, numeric)
    }
}

/// A seeded generator for test data (SplitMix64). Print the seed on failure to reproduce.
public struct TestGenerator: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(next() >> 40) * 0x1p-24
    }

    /// `count` uniform values in [low, high).
    public mutating func uniformArray(_ count: Int, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        (0..<count).map { _ in uniform(low, high) }
    }
}
