// `mnist evaluate`: how a saved model does on the test set.
import ArgumentParser
import ConvNet
import Foundation
import Training

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Test accuracy, per-class precision and recall, and the confusion matrix of a saved model.")

    @Option(
        name: .customLong("model"),
        help: ArgumentHelp(
            "The model file (safetensors); repeat it to evaluate an ensemble, whose mean probabilities decide "
                + "(default: model.safetensors).", valueName: "path"))
    var models: [String] = []

    /// The files named, or the default one.
    var modelFiles: [String] { models.isEmpty ? ["model.safetensors"] : models }

    @Flag(help: "Print one JSON object instead of tables.")
    var json = false

    @OptionGroup var data: DataOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.evaluate")
        let ensemble = try Ensemble(loading: modelFiles.map { URL(fileURLWithPath: $0) })
        let dataset = try data.load(logger: logger)
        let evaluation = Evaluation(ensemble: ensemble, images: dataset.test)
        if json {
            let object: [String: Any] = [
                "model": modelFiles[0], "models": modelFiles, "count": evaluation.count,
                "accuracy": evaluation.accuracy,
                "mean_loss": evaluation.meanLoss, "precision": evaluation.precision, "recall": evaluation.recall,
                "confusion": evaluation.confusion,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print(
            String(
                format: "accuracy %.2f%% on %d test images (mean loss %.4f)", evaluation.accuracy * 100,
                evaluation.count, evaluation.meanLoss)
                + (modelFiles.count > 1 ? ", an ensemble of \(modelFiles.count) models" : ""))
        print("\nclass  precision  recall")
        for k in evaluation.precision.indices {
            print(String(format: "%5d  %8.2f%%  %6.2f%%", k, evaluation.precision[k] * 100, evaluation.recall[k] * 100))
        }
        print("\nconfusion (rows: true class, columns: predicted)")
        print("      " + evaluation.confusion.indices.map { String(format: "%5d", $0) }.joined())
        for (k, row) in evaluation.confusion.enumerated() {
            print(String(format: "%5d ", k) + row.map { String(format: "%5d", $0) }.joined())
        }
    }
}
