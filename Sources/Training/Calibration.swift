// How far a model's confidence can be taken at its word: temperature scaling (Guo et al. 2017) fitted
// on held-out images, and the expected calibration error that says how well it worked. A temperature
// T divides the log-probabilities before they are normalised again: T > 1 makes an over-confident
// model less sure, and never changes which class is the most likely.
import Foundation

public enum Calibration {
    /// `probabilities` (`[N, classes]`) at temperature `temperature`: each row `p^(1/T)`, normalised.
    public static func tempered(_ probabilities: [Float], classes: Int, temperature: Float) -> [Float] {
        guard temperature != 1 else { return probabilities }
        var result = [Float](repeating: 0, count: probabilities.count)
        for row in stride(from: 0, to: probabilities.count, by: classes) {
            let logs = (row..<(row + classes)).map { Double(log(max(probabilities[$0], .leastNormalMagnitude))) }
            let top = logs.max() ?? 0
            let scaled = logs.map { exp(($0 - top) / Double(temperature)) }
            let total = scaled.reduce(0, +)
            for column in 0..<classes { result[row + column] = Float(scaled[column] / total) }
        }
        return result
    }

    /// The mean negative log-likelihood of `labels` under `probabilities` at `temperature`.
    public static func negativeLogLikelihood(
        _ probabilities: [Float], labels: [UInt8], classes: Int, temperature: Float
    ) -> Double {
        let tempered = tempered(probabilities, classes: classes, temperature: temperature)
        let total = labels.indices.reduce(0.0) { sum, index in
            sum - log(max(Double(tempered[index * classes + Int(labels[index])]), 1e-300))
        }
        return total / Double(max(1, labels.count))
    }

    /// The temperature (0.05...20) with the least negative log-likelihood, by golden-section search on
    /// its logarithm (the likelihood is unimodal in it).
    public static func fitTemperature(_ probabilities: [Float], labels: [UInt8], classes: Int) -> Float {
        func loss(_ logT: Double) -> Double {
            negativeLogLikelihood(probabilities, labels: labels, classes: classes, temperature: Float(exp(logT)))
        }
        let ratio = (5.0.squareRoot() - 1) / 2
        var low = log(0.05), high = log(20.0)
        var a = high - ratio * (high - low), b = low + ratio * (high - low)
        var lossA = loss(a), lossB = loss(b)
        for _ in 0..<40 {
            if lossA < lossB {
                high = b
                b = a
                lossB = lossA
                a = high - ratio * (high - low)
                lossA = loss(a)
            } else {
                low = a
                a = b
                lossA = lossB
                b = low + ratio * (high - low)
                lossB = loss(b)
            }
        }
        return Float(exp((low + high) / 2))
    }

    /// The expected calibration error: images binned by their top probability into `bins` equal
    /// ranges; the mean over images of |accuracy - confidence| of their bin.
    public static func expectedCalibrationError(
        _ probabilities: [Float], labels: [UInt8], classes: Int, bins: Int = 15
    ) -> Double {
        var confidence = [Double](repeating: 0, count: bins)
        var correct = [Double](repeating: 0, count: bins)
        var counts = [Double](repeating: 0, count: bins)
        for index in labels.indices {
            let row = probabilities[(index * classes)..<((index + 1) * classes)]
            guard let top = row.indices.max(by: { row[$0] < row[$1] }) else { continue }
            let bin = min(bins - 1, Int(Double(row[top]) * Double(bins)))
            confidence[bin] += Double(row[top])
            correct[bin] += top - index * classes == Int(labels[index]) ? 1 : 0
            counts[bin] += 1
        }
        let total = counts.reduce(0, +)
        return (0..<bins).reduce(0.0) { sum, bin in sum + abs(correct[bin] - confidence[bin]) } / max(1, total)
    }
}
