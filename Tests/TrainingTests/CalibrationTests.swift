// Temperature scaling and the expected calibration error, on probabilities whose true temperature
// the test chooses: labels are drawn from softmax(z / T), and the model reports softmax(z).
import TestSupport
import XCTest

@testable import Training

final class CalibrationTests: XCTestCase {
    /// 8,000 rows of 10 classes: logits z, the reported softmax(z), and labels drawn from softmax(z / T).
    private func sample(trueTemperature: Double, seed: UInt64) -> (probabilities: [Float], labels: [UInt8]) {
        var random = TestGenerator(seed: seed)
        var probabilities: [Float] = [], labels: [UInt8] = []
        for _ in 0..<8000 {
            let logits = (0..<10).map { _ in Double(random.uniform(-1, 1)) * 3 }
            func softmax(_ t: Double) -> [Double] {
                let e = logits.map { exp($0 / t) }
                let total = e.reduce(0, +)
                return e.map { $0 / total }
            }
            probabilities += softmax(1).map(Float.init)
            let truth = softmax(trueTemperature)
            var draw = Double(random.uniform(0, 1)), label = 9
            for (k, p) in truth.enumerated() {
                draw -= p
                if draw < 0 {
                    label = k
                    break
                }
            }
            labels.append(UInt8(label))
        }
        return (probabilities, labels)
    }

    func testTheFittedTemperatureIsTheOneTheLabelsWereDrawnAt() {
        for trueTemperature in [0.5, 1.0, 2.5] {
            let (probabilities, labels) = sample(trueTemperature: trueTemperature, seed: 7)
            let fitted = Calibration.fitTemperature(probabilities, labels: labels, classes: 10)
            XCTAssertEqual(Double(fitted), trueTemperature, accuracy: trueTemperature * 0.1)
            let before = Calibration.expectedCalibrationError(probabilities, labels: labels, classes: 10)
            let tempered = Calibration.tempered(probabilities, classes: 10, temperature: fitted)
            let after = Calibration.expectedCalibrationError(tempered, labels: labels, classes: 10)
            XCTAssertLessThan(after, 0.02, "calibrated: \(after)")
            if trueTemperature != 1 { XCTAssertGreaterThan(before, 2 * after, "\(before) against \(after)") }
            // The most likely class never changes; rows still sum to 1.
            for row in stride(from: 0, to: 1000, by: 10) {
                let a = probabilities[row..<(row + 10)], b = tempered[row..<(row + 10)]
                XCTAssertEqual(a.indices.max { a[$0] < a[$1] }, b.indices.max { b[$0] < b[$1] })
                XCTAssertEqual(Double(b.reduce(0, +)), 1, accuracy: 1e-5)
            }
        }
    }

    func testTheCalibrationErrorOfAKnownBinning() {
        // Two images at 0.95 confidence, one right and one wrong: |0.5 - 0.95| for both; two at 0.55,
        // both right: |1 - 0.55|. The mean over the four images is (0.45 * 2 + 0.45 * 2) / 4.
        func row(_ top: Float, _ at: Int) -> [Float] {
            (0..<10).map { $0 == at ? top : (1 - top) / 9 }
        }
        let probabilities = row(0.95, 3) + row(0.95, 3) + row(0.55, 1) + row(0.55, 1)
        let error = Calibration.expectedCalibrationError(probabilities, labels: [3, 4, 1, 1], classes: 10)
        XCTAssertEqual(error, 0.45, accuracy: 1e-6)
    }
}
