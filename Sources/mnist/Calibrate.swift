// `mnist calibrate`: fits the temperature at which a model's confidence means what it says, on half of
// the test set, reports the calibration error on the other half, and records it in the model files.
// The fitting and the error live in Training (Calibration); this file runs them and writes.
import ArgumentParser
import ConvNet
import Foundation
import MNIST
import Training

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit the temperature that calibrates a model's confidence, and record it in the model file.",
        discussion: """
            The temperature is fitted on the first half of the test set (least negative log-likelihood) and \
            judged on the second half, where the expected calibration error (15 bins) is printed before and \
            after. It never changes which digit is read, only how sure the answer says it is; `predict` uses \
            it to say when an image is not a digit. It also fits where the training digits lie in what the \
            network's last layer sees (class means and a shared covariance); `predict` says an image is not \
            a digit when it lies farther from all of them than 1% of the test digits do. Each file is rewritten \
            atomically with both in its metadata (its weights untouched); an ensemble's files all get the \
            ensemble's temperature.
            """)

    @Option(
        name: .customLong("model"),
        help: ArgumentHelp(
            "The model file (safetensors); repeat it for an ensemble (default: model.safetensors).",
            valueName: "path"))
    var models: [String] = []

    @OptionGroup var data: DataOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.calibrate")
        let files = (models.isEmpty ? ["model.safetensors"] : models).map { URL(fileURLWithPath: $0) }
        var ensemble = try Ensemble(loading: files)
        ensemble.temperature = 1
        let dataset = try data.load(logger: logger)
        let test = dataset.test
        let classes = ensemble.classCount
        var probabilities: [Float] = []
        for start in stride(from: 0, to: test.count, by: 1000) {
            let end = min(test.count, start + 1000)
            probabilities += ensemble.probabilities(
                images: InputNormalization.normalized(Array(test.pixels[(start * 784)..<(end * 784)])))
        }
        let half = test.count / 2
        let fitting = Array(probabilities[..<(half * classes)]), judging = Array(probabilities[(half * classes)...])
        let fittingLabels = Array(test.labels[..<half]), judgingLabels = Array(test.labels[half...])
        let temperature = Calibration.fitTemperature(fitting, labels: fittingLabels, classes: classes)
        let before = Calibration.expectedCalibrationError(judging, labels: judgingLabels, classes: classes)
        let after = Calibration.expectedCalibrationError(
            Calibration.tempered(judging, classes: classes, temperature: temperature), labels: judgingLabels,
            classes: classes)
        let lossBefore = Calibration.negativeLogLikelihood(
            judging, labels: judgingLabels, classes: classes, temperature: 1)
        let lossAfter = Calibration.negativeLogLikelihood(
            judging, labels: judgingLabels, classes: classes, temperature: temperature)
        // Each model's feature distribution, fitted on the training set; its threshold is the distance
        // that 1% of test images 0-4999 exceed, judged on 5000-9999.
        var distributions: [FeatureDistribution] = []
        var flaggedShares: [Double] = []
        for network in ensemble.networks {
            func features(_ set: LabeledImages, _ range: Range<Int>) -> [Float] {
                stride(from: range.lowerBound, to: range.upperBound, by: 1000).flatMap { start in
                    let end = min(range.upperBound, start + 1000)
                    return network.features(
                        images: InputNormalization.normalized(Array(set.pixels[(start * 784)..<(end * 784)])))
                }
            }
            var distribution = try FeatureDistribution.fit(
                features: features(dataset.train, 0..<dataset.train.count), labels: dataset.train.labels,
                featureCount: network.featureCount, classes: network.classCount)
            let fitted = distribution.distances(features(test, 0..<half)).sorted()
            distribution.threshold = fitted[min(fitted.count - 1, Int((Double(fitted.count) * 0.99).rounded()))]
            let judged = distribution.distances(features(test, half..<test.count))
            flaggedShares.append(Double(judged.filter { $0 > distribution.threshold }.count) / Double(judged.count))
            distributions.append(distribution)
        }
        for (url, distribution) in zip(files, distributions) {
            let (network, metadata) = try Network.loadChecked(from: url)
            var updated = metadata.merging(distribution.metadata) { _, new in new }
            updated[ModelMetadataKey.temperature] = "\(temperature)"
            try network.save(to: url, metadata: updated)
        }
        print(
            String(
                format: "temperature %.3f, fitted on test images 0-%d; on images %d-%d the expected calibration "
                    + "error went from %.2f%% to %.2f%% and the mean negative log-likelihood from %.4f to %.4f",
                temperature, half - 1, half, test.count - 1, before * 100, after * 100, lossBefore, lossAfter))
        print(
            "feature check: the distance from the training digits that 1% of test images 0-\(half - 1) exceed "
                + "is exceeded by "
                + flaggedShares.map { String(format: "%.2f%%", $0 * 100) }.joined(separator: ", ")
                + " of images \(half)-\(test.count - 1)" + (files.count > 1 ? " (per model)" : ""))
        print("recorded in \(files.map(\.path).joined(separator: ", "))")
    }
}
