// Options that shape a training run, shared by `train` and `coordinator`, and how a run is shown.
import ArgumentParser
import ConvNet
import Foundation
import Training

extension OptimizerKind: ExpressibleByArgument {}
extension LearningRateSchedule: ExpressibleByArgument {}

/// The flags that map one to one onto `TrainingConfiguration`.
struct TrainingOptions: ParsableArguments {
    private static let defaults = TrainingConfiguration()

    @Option(
        help: ArgumentHelp(
            "Passes over the training set (1-1000; default: \(TrainingConfiguration.epochsHelp)).",
            valueName: "epochs"))
    var epochs: Int?

    @Option(help: "Images per optimizer step; the global batch when training with workers (1-8192).")
    var batchSize = defaults.batchSize

    @Option(help: "Peak learning rate, in (0, 10].")
    var learningRate = defaults.learningRate

    @Option(help: "Optimizer: sgd (momentum 0.9) or adam.")
    var optimizer = defaults.optimizer

    @Option(
        help: ArgumentHelp(
            "Learning-rate schedule.",
            discussion: LearningRateSchedule.allCases.map { "\($0.rawValue): \($0.summary)" }.joined(separator: "\n")))
    var schedule = defaults.schedule

    @Option(
        help: ArgumentHelp(
            "Network preset.",
            discussion: ModelPreset.all.map { "\($0.name): \($0.summary)" }.joined(separator: "\n")))
    var model = defaults.model

    @Option(help: "Seed for initialisation, shuffling, dropout and augmentation; the same seed gives the same model.")
    var seed = defaults.seed

    @Flag(
        inversion: .prefixedNo,
        help: "Vary each training image by a random transform (--shift, --rotation, --scale, --shear, --elastic).")
    var augment = defaults.augment

    @Option(help: ArgumentHelp("Largest translation of a training image along each axis, 0-8.", valueName: "pixels"))
    var shift = defaults.shift

    @Option(help: ArgumentHelp("Largest rotation of a training image either way, 0-90.", valueName: "degrees"))
    var rotation = defaults.rotation

    @Option(
        help: ArgumentHelp(
            "Largest relative change of a training image's size, 0-0.5 (factors in [1 - scale, 1 + scale]).",
            valueName: "fraction"))
    var scale = defaults.scale

    @Option(help: ArgumentHelp("Largest horizontal shear of a training image either way, 0-45.", valueName: "degrees"))
    var shear = defaults.shear

    @Option(
        help: ArgumentHelp(
            "Strength of a random elastic distortion of each training image, 0-100 (0: none; 34 is Simard et al.'s; smoothed over 4 pixels).",
            valueName: "pixels"))
    var elastic = defaults.elastic

    @Option(
        help: """
            Threads for OpenBLAS and the element-wise kernels (1-256; default: the CPUs this process may use, \
            container limits included).
            """)
    var threads = defaults.threads

    @Option(help: "Weight decay, 0-1 (L2 for sgd, decoupled for adam).")
    var weightDecay = defaults.weightDecay

    @Option(
        help: ArgumentHelp(
            "Decay per step of the moving average of the weights that is evaluated and saved, in [0, 1); 0 saves the weights as trained.",
            valueName: "decay"))
    var averageDecay = defaults.averageDecay

    /// The configuration these flags describe.
    var configuration: TrainingConfiguration {
        var configuration = TrainingConfiguration(model: model)
        if let epochs { configuration.epochs = epochs }
        configuration.batchSize = batchSize
        configuration.learningRate = learningRate
        configuration.optimizer = optimizer
        configuration.schedule = schedule
        configuration.model = model
        configuration.seed = seed
        configuration.augment = augment
        configuration.shift = shift
        configuration.rotation = rotation
        configuration.scale = scale
        configuration.shear = shear
        configuration.elastic = elastic
        configuration.threads = threads
        configuration.weightDecay = weightDecay
        configuration.averageDecay = averageDecay
        return configuration
    }

    func validate() throws {
        do {
            try configuration.validate()
        } catch let error as TrainingConfiguration.ValidationError {
            throw ValidationError(error.description)
        }
    }
}

/// How progress is shown.
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Where the model goes and how the run is reported.
struct OutputOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Where to write the trained model (safetensors).", valueName: "path"))
    var output = "model.safetensors"

    @Option(
        help: "text: a progress bar on a terminal, else one line per epoch; json: one JSON object per epoch on stdout.")
    var logFormat = LogFormat.text

    var outputURL: URL { URL(fileURLWithPath: output) }

    func validate() throws {
        let folder = outputURL.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue
        else {
            throw ValidationError("--output: the folder \(folder.path) does not exist")
        }
        guard FileManager.default.isWritableFile(atPath: folder.path) else {
            throw ValidationError("--output: the folder \(folder.path) is not writable")
        }
        // An existing folder, device or pipe is never replaced by a model: refuse it before training.
        try refuseNonRegularFile(output, flag: "--output")
    }
}

/// Throws naming `flag` when `path` exists and is not a regular file (a folder, a device, a pipe):
/// what is written there must never replace one.
func refuseNonRegularFile(_ path: String, flag: String) throws {
    guard let type = try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType,
        type != .typeRegular
    else { return }
    let what = type == .typeDirectory ? "a folder" : "not a regular file"
    throw ValidationError("\(flag): \(path) is \(what); name a file")
}
