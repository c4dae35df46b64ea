// Softmax followed by cross-entropy against integer labels, fused for numerical stability
// (log-sum-exp with the row maximum subtracted). Loss is the SUM over samples, not the mean, so
// shard gradients add up; callers divide by the total sample count.
//
// Shape letters: N batch, K classes.

enum SoftmaxCrossEntropy {
    /// Softmax of `logits` `[N, K]` into `probabilities` `[N, K]` (may alias).
    static func softmax(
        logits: UnsafePointer<Float>, probabilities: UnsafeMutablePointer<Float>, batch: Int, classes: Int
    ) {
        for n in 0..<batch {
            let row = logits + n * classes, out = probabilities + n * classes
            var largest = row[0]
            for k in 1..<classes { largest = max(largest, row[k]) }
            var sum: Float = 0
            for k in 0..<classes {
                let value = expf(row[k] - largest)
                out[k] = value
                sum += value
            }
            let inverse = 1 / sum
            for k in 0..<classes { out[k] *= inverse }
        }
    }

    /// Loss sum, number of samples whose largest logit is the label (first index wins ties),
    /// and dlogits `[N, K]` = softmax - onehot, OVERWRITTEN (gradient of the summed loss).
    static func lossAndGradient(
        logits: UnsafePointer<Float>, labels: UnsafePointer<UInt8>, logitGradient: UnsafeMutablePointer<Float>,
        batch: Int, classes: Int
    ) -> (lossSum: Double, correct: Int) {
        var lossSum = 0.0
        var correct = 0
        for n in 0..<batch {
            let row = logits + n * classes, gradient = logitGradient + n * classes
            let label = Int(labels[n])
            var largest = row[0], best = 0
            for k in 1..<classes where row[k] > largest {
                largest = row[k]
                best = k
            }
            if best == label { correct += 1 }
            var sum = 0.0
            for k in 0..<classes {
                let value = expf(row[k] - largest)
                gradient[k] = value
                sum += Double(value)
            }
            lossSum += log(sum) - Double(row[label] - largest)
            let inverse = Float(1 / sum)
            for k in 0..<classes { gradient[k] *= inverse }
            gradient[label] -= 1
        }
        return (lossSum, correct)
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
