// Small files and folders for tests: temporary directories, tiny IDX datasets, the built `mnist` binary.
// Nothing here touches the network or the real dataset.
import Foundation
import MNIST

/// A temporary directory removed when the value is released.
public final class TemporaryDirectory {
    public let url: URL

    public init(_ label: String = "test") throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("mnist-\(label)-\(getpid())-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// The URL of `name` inside this directory.
    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// Tiny IDX datasets made on the spot.
public enum TinyDataset {
    /// `count` random 28x28 images with labels cycling 0...9, reproducible from `seed`.
    public static func images(count: Int, seed: UInt64 = 1, rows: Int = 28, columns: Int = 28) -> LabeledImages {
        var state = seed
        var pixels = [UInt8](repeating: 0, count: count * rows * columns)
        for index in pixels.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            pixels[index] = UInt8(truncatingIfNeeded: state >> 56)
        }
        return LabeledImages(rows: rows, columns: columns, pixels: pixels, labels: (0..<count).map { UInt8($0 % 10) })
    }

    /// A fresh temporary folder holding a small unpinned data set for the commands' `--data`: 640
    /// training and 160 test images drawn from `seed` and `seed + 1`.
    public static func folder(_ label: String, seed: UInt64) throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory(label)
        try write(
            train: images(count: 640, seed: seed), test: images(count: 160, seed: seed + 1), to: directory.url)
        return directory
    }

    /// Writes a training and a test set as the four standard raw files into `folder`, returning
    /// pins that match them (so a fetch of this tiny set can be verified like the real one).
    @discardableResult
    public static func write(train: LabeledImages, test: LabeledImages, to folder: URL, gzip: Bool = false) throws
        -> DatasetPins
    {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let names = DatasetPins.mnist.files.map(\.name)
        let contents = [
            IDX.imageFileBytes(train), IDX.labelFileBytes(train), IDX.imageFileBytes(test), IDX.labelFileBytes(test),
        ]
        for (name, data) in zip(names, contents) {
            if gzip {
                try Gzip.compress(data).write(to: folder.appendingPathComponent(name + ".gz"))
            } else {
                try data.write(to: folder.appendingPathComponent(name))
            }
        }
        let files = zip(names, contents).map { DatasetFile(name: $0, sha256: $1.sha256Hex, size: $1.count) }
        return DatasetPins(trainImages: files[0], trainLabels: files[1], testImages: files[2], testLabels: files[3])
    }
}

/// Where `swift build` / `swift test` put the built products, such as the `mnist` executable.
public enum Products {
    /// The folder holding the test bundle, and next to it the `mnist` executable.
    public static var directory: URL {
        let executable = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        var folder = executable.deletingLastPathComponent()
        // On Linux the test runner is the .xctest bundle itself; on macOS it sits inside one.
        while folder.pathComponents.count > 1,
            !FileManager.default.fileExists(atPath: folder.appendingPathComponent("mnist").path)
        {
            folder.deleteLastPathComponent()
            if folder.lastPathComponent == ".build" { break }
        }
        return folder
    }

    /// The built `mnist` executable.
    public static var mnist: URL { directory.appendingPathComponent("mnist") }
}

/// Thrown by ``requireRealMNIST()`` outside CI when the real data is absent.
public struct RealMNISTMissing: Error, CustomStringConvertible {
    public let folder: String
    public var description: String {
        "the real MNIST is not in \(folder): run `mnist fetch` first (Cluster/test.sh does)"
    }
}

/// The folder holding the verified real MNIST. In CI (`CI=true`) its absence is a failure, never a skip;
/// elsewhere the caller may turn the thrown ``RealMNISTMissing`` into a skip.
public func requireRealMNIST() throws -> DatasetFolder {
    let folder = DatasetFolder(url: DatasetFolder.defaultURL())
    if DatasetPins.mnist.files.allSatisfy({ folder.existingPath(of: $0) != nil }) { return folder }
    throw RealMNISTMissing(folder: folder.url.path)
}

/// Whether this run is in CI, where nothing may be skipped for want of data.
public var isContinuousIntegration: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
